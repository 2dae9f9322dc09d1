"""The work-copy rules (coord/work/copies.py): which stored message of an item a claim may hand out, by its record."""

from __future__ import annotations

import pytest

from nats_mcp.coord.work.copies import copy_token, requeue_token, stale_copy
from nats_mcp.coord.work.store import ItemRecord, ItemState

ID = "0b8a4f0e-6f5c-4f43-9d36-2c1f7d3f9a11"
T1 = requeue_token(ID, 7)
T2 = requeue_token(ID, 9)


def rec(state: ItemState, seq: int, requeue: str | None = None) -> ItemRecord:
    return ItemRecord(state=state, seq=seq, requeue=requeue)


def test_requeue_tokens_name_the_dlq_entry_and_are_told_from_other_msg_ids() -> None:
    assert requeue_token(ID, 7) == f"requeue-{ID}-7"
    assert T1 != T2
    assert copy_token(T1) == T1
    assert copy_token(ID) is None  # a broadcast's own Nats-Msg-Id
    assert copy_token(None) is None


@pytest.mark.parametrize(
    ("record", "seq", "msg_id"),
    [
        (None, 5, ID),  # never claimed
        (rec("claimed", 5), 5, ID),  # its own message again (lease ran out)
        (rec("released", 5), 5, ID),
        (rec("dead", 5), 5, ID),  # dead-letter left half done: the claim settles it, not this rule
        (rec("requeued", 5, T1), 12, T1),  # the retry's copy
        (rec("claimed", 12, T1), 12, T1),  # that copy again after its lease ran out
        (rec("dead", 5), 12, f"requeue-{ID}-3"),  # a record of an older release, which named no copy
        (rec("claimed", 5), 12, ID),  # no DLQ retry involved: the claim keeps its old behaviour
    ],
)
def test_messages_that_may_be_handed_out(record: ItemRecord | None, seq: int, msg_id: str | None) -> None:
    assert stale_copy(record, seq, msg_id) is None


@pytest.mark.parametrize(
    ("record", "seq", "msg_id", "why"),
    [
        (rec("requeued", 5, T1), 5, ID, "superseded by a DLQ retry"),  # the leftover a retry removed
        (rec("discarded", 5), 5, ID, "superseded by a DLQ discard"),
        (rec("requeued", 5, T2), 12, T1, "a copy the DLQ retry did not publish"),  # an older retry's copy
        (rec("requeued", 5, T1), 12, None, "a copy the DLQ retry did not publish"),
        (rec("discarded", 5, T1), 12, T1, "a copy of a discarded item"),
        (rec("claimed", 12, T1), 13, T1, "a second copy of a DLQ retry whose first copy was claimed"),
        (rec("done", 12, T1), 13, T1, "a second copy of a DLQ retry whose first copy was claimed"),
        (rec("dead", 12, T1), 13, T1, "a second copy of a DLQ retry whose first copy was claimed"),
    ],
)
def test_messages_that_are_dropped(record: ItemRecord, seq: int, msg_id: str | None, why: str) -> None:
    assert stale_copy(record, seq, msg_id) == why


def test_a_record_of_an_older_release_decodes_without_a_copy_name() -> None:
    old = b'{"state":"dead","seq":5,"delivered":1,"errors":[],"reason":"unrecoverable","attempts":1}'
    record = ItemRecord.decode(old)
    assert record is not None and record.requeue is None
    assert ItemRecord.decode(rec("requeued", 5, T1).encode()) == rec("requeued", 5, T1)
