"""The work-copy boundary: which stored message of an item may still be handed out, decided from its state record alone.

An item can have more than one message in its queue's history: the one it was dead-lettered with
(left stored when the dead-letterer died before removing it), the copy a DLQ retry published, and a
second copy of that retry (published again by a process that finished the retry after JetStream's
``Nats-Msg-Id`` window had passed). A DLQ retry first turns the item's dead record into a
``requeued`` record that names its copy by ``Nats-Msg-Id`` (:func:`requeue_token`); a discard turns it
into ``discarded``. Every record written for the retried item afterwards keeps that name. So a claim
(or the events mover) that meets a message can tell, by the record, whether it is superseded: pure
logic, no I/O, applied before anything is handed out or dead-lettered.
"""

from __future__ import annotations

from nats_mcp.coord.work.store import ItemRecord

REQUEUE_PREFIX = "requeue-"
WITHDRAWN = ("requeued", "discarded", "cancelled")
"""Record states that say the message at ``record.seq`` left the queue (with the item's DLQ entry, or cancelled)."""


def requeue_token(item_id: str, dlq_seq: int) -> str:
    """The ``Nats-Msg-Id`` of the copy a retry of the DLQ entry stored at ``dlq_seq`` publishes (the same for every
    process that finishes that retry)."""
    return f"{REQUEUE_PREFIX}{item_id}-{dlq_seq}"


def copy_token(msg_id: str | None) -> str | None:
    """The requeue token of a delivered message's ``Nats-Msg-Id`` (None: not a DLQ retry's copy)."""
    return msg_id if msg_id is not None and msg_id.startswith(REQUEUE_PREFIX) else None


def stale_copy(record: ItemRecord | None, seq: int, msg_id: str | None) -> str | None:
    """Why the message stored at ``seq`` (with ``msg_id``) must not be handed out, or None when it may be.

    * the record's own message after a retry or discard took the item out of the DLQ: superseded;
    * a ``requeued`` record and a message that is not the retry's copy: a copy of an older generation;
    * a copy of a retry whose first copy was claimed already (the record moved on and still names it): a duplicate.

    Anything else is left to the claim (a record of an older release, without a ``requeue`` name, keeps the
    old behaviour: the message is claimed).
    """
    if record is None:
        return None
    if record.state == "cancelled" or (record.cancelled and record.seq != seq):
        return "the item was cancelled"
    token = copy_token(msg_id)
    if record.seq == seq:
        if record.state == "requeued":
            return "superseded by a DLQ retry"
        return "superseded by a DLQ discard" if record.state == "discarded" else None
    if record.state == "requeued":
        return None if token == record.requeue else "a copy the DLQ retry did not publish"
    if record.state == "discarded":
        return "a copy of a discarded item"
    if record.requeue is not None and token == record.requeue:
        return "a second copy of a DLQ retry whose first copy was claimed"
    return None
