"""A stored channel message decodes as it always did (json.loads, the known fields, one validation) on any body."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nats_mcp.bus.directget import StoredMsg
from nats_mcp.coord.channels import _decode
from nats_mcp.coord.models import ChannelMessage

FIELDS = frozenset(ChannelMessage.model_fields)


def reference(stored: StoredMsg) -> ChannelMessage | None:
    """The decoding before it was made cheaper: the specification of what a body means."""
    try:
        body = json.loads(stored.data)
        if not isinstance(body, dict):
            raise ValueError("not an object")
        known = {k: v for k, v in body.items() if k in FIELDS}
        return ChannelMessage.model_validate({**known, "sequence": stored.seq})
    except (ValueError, ValidationError, RecursionError):
        return None


def same(stored: StoredMsg) -> None:
    got, want = _decode(stored), reference(stored)
    assert got == want
    if got is not None and want is not None:
        assert got.model_fields_set == want.model_fields_set
        assert got.model_dump_json(exclude_none=True) == want.model_dump_json(exclude_none=True)


GOOD: dict[str, Any] = {
    "id": "m1",
    "handle": "ann",
    "senderGuid": "g" * 32,
    "message": "hello",
    "timestamp": "2026-12-07T20:00:00.000Z",
}
CASES: list[bytes] = [
    json.dumps(GOOD).encode(),
    json.dumps(GOOD | {"scope": "team"}).encode(),
    json.dumps(GOOD | {"scope": None, "sequence": 99, "newer": {"x": [1]}}).encode(),
    json.dumps(GOOD | {"scope": "everyone"}).encode(),
    json.dumps(GOOD | {"handle": 5}).encode(),
    json.dumps({k: v for k, v in GOOD.items() if k != "message"}).encode(),
    b"[1, 2]",
    b"not json",
    b"",
    b'{"id": "\xff\xfe"}',
    b"[" * 5000 + b"]" * 5000,
    json.dumps(GOOD).encode() + b"  \n",
]


def test_hand_picked_bodies() -> None:
    for i, data in enumerate(CASES):
        same(StoredMsg(seq=i + 1, subject="ch", data=data, time=""))


values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.sampled_from(["team", "public", "x"])
)


@settings(max_examples=300)
@given(
    st.dictionaries(st.sampled_from([*GOOD, "scope", "sequence", "other"]), values, max_size=8),
    st.booleans(),
    st.integers(min_value=1, max_value=2**53),
)
def test_generated_bodies(body: dict[str, Any], fill: bool, seq: int) -> None:
    data = json.dumps(GOOD | body if fill else body).encode()
    same(StoredMsg(seq=seq, subject="ch", data=data, time=""))
