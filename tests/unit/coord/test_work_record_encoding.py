"""A work item's state record and its submission encode exactly as ``dataclasses.asdict`` + ``json.dumps`` did."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nats_mcp.coord.work.store import ItemRecord
from nats_mcp.coord.work.submissions import Submission


def before(record: Any) -> bytes:
    return json.dumps(asdict(record), separators=(",", ":"), ensure_ascii=False).encode()


results = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200)
@given(
    result=results,
    errors=st.lists(st.text(max_size=12), max_size=4),
    note=st.none() | st.text(max_size=12),
    item=st.none() | st.dictionaries(st.text(max_size=5), results, max_size=3),
    deps=st.lists(st.text(max_size=8), max_size=3),
)
def test_encodings_are_unchanged(
    result: Any, errors: list[str], note: str | None, item: dict[str, Any] | None, deps: list[str]
) -> None:
    record = ItemRecord(state="done", seq=7, errors=errors, note=note, result=result, claimer="c" * 32)
    assert record.encode() == before(record)
    assert ItemRecord.decode(record.encode()) == record
    sub = Submission("blocked", "o" * 32, "cap", "task", depends_on=deps, item=item, seq=3, boundary=note)
    assert sub.encode() == before(sub)
    assert Submission.decode(sub.encode()) == sub
