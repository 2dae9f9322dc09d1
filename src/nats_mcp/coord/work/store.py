"""The work-item state boundary: one KV record per handed-out item, changed only by compare-and-set.

JetStream says who a message is delivered to; this record says who owns the item and what became of
it. Every transition (claimed, released for a retry, completed, dead-lettered, requeued from the
DLQ) is a KV write conditioned on the revision that was read, so of two racing transitions exactly
one wins and the other re-reads and sees why it lost: that is what makes completion exactly-once
and ownership checkable from any server process. Records expire with the bucket's TTL.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from nats_mcp.bus.errors import JetStreamError, KeyNotFound, WrongLastSequence, nats_edge
from nats_mcp.bus.failover import riding_out
from nats_mcp.bus.jstypes import KeyValue
from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.layout import Layout

log = logging.getLogger("nats_mcp.coord.work.service")

ItemState = Literal["claimed", "released", "done", "dead", "requeued", "discarded", "cancelled"]
"""``requeued``/``discarded``: a DLQ retry or discard took the dead item out of the DLQ; the message at ``seq`` is
superseded (see :mod:`nats_mcp.coord.work.copies`). ``cancelled``: its submitter (or an admin) cancelled it; no
message of the item is handed out any more (:mod:`nats_mcp.coord.work.cancel`)."""
WRONG_LAST_SEQUENCE = (10071, 10164)
"""JetStream's answers to a conditional write whose key moved on (nats-py turns them into KeyWrongLastSequenceError
for create and update, not for delete)."""
MAX_ERRORS_KEPT = 20
"""The error history of an item keeps its first and latest entries up to this many."""


@dataclass(frozen=True)
class ItemRecord:
    """Where one item stands. ``seq`` and ``delivered`` identify the delivery the record is about."""

    state: ItemState
    seq: int
    """Work-stream sequence of the message (a requeued item is a new message with a new sequence)."""
    delivered: int = 0
    claimer: str | None = None
    reply: str | None = None
    """Reply subject of the current delivery: acknowledging it is how any process settles the item."""
    lease_expires: float = 0.0
    errors: list[str] = field(default_factory=list)
    reason: str | None = None
    """Why a dead item was dead-lettered (a DlqItem reason)."""
    attempts: int = 0
    progress: int | None = None
    note: str | None = None
    result: Any = None
    settled_at: str | None = None
    deadline: bool = False
    """Whether the item has a deadline timer to disarm when it is settled."""
    requeue: str | None = None
    """``Nats-Msg-Id`` of the DLQ retry's copy this record's item came from (None: not requeued by a retry)."""
    cancelled: bool = False
    """On a claimed item: a cancel was asked; the claimer's next progress/complete/fail settles it as cancelled."""
    dependency: str | None = None
    """With reason ``dependency_failed``: the dependency that was dead-lettered or cancelled."""

    def with_error(self, error: str) -> ItemRecord:
        errors = [*self.errors, error]
        if len(errors) > MAX_ERRORS_KEPT:
            half = MAX_ERRORS_KEPT // 2
            errors = [*errors[:half], f"... {len(errors) - MAX_ERRORS_KEPT} more ...", *errors[-(half - 1) :]]
        return replace(self, errors=errors)

    def encode(self) -> bytes:
        # The fields as they are (json.dumps copies nothing; asdict's deep copy was most of the encoding's cost).
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> ItemRecord | None:
        try:
            body = json.loads(raw or b"")
            known = {k: body[k] for k in cls.__dataclass_fields__ if k in body}
            return cls(**known)
        except (ValueError, TypeError):
            return None


class ItemRecords:
    """Read and conditionally write item records in the namespace's work-state bucket."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    async def read(self, item_id: str) -> tuple[ItemRecord | None, int]:
        """The record and its revision; (None, 0) when there is none (or it is unreadable: it is then replaced)."""
        kv = await self.bucket.kv()
        try:
            with nats_edge():
                entry = await kv.get(Layout.item_key(item_id))
        except KeyNotFound:  # also deleted/purged keys
            return None, 0
        record = ItemRecord.decode(entry.value)
        if record is None:
            log.warning("replacing the unreadable state record of work item %s", item_id)
        return record, int(entry.revision or 0)

    async def write(self, item_id: str, record: ItemRecord, revision: int) -> int | None:
        """Store ``record`` if the key is still at ``revision`` (0: absent); the new revision, or None if it moved."""
        kv = await self.bucket.kv()
        key = Layout.item_key(item_id)

        async def attempt() -> int:
            with nats_edge():
                if revision == 0:
                    return int(await kv.create(key, record.encode()))
                return int(await kv.update(key, record.encode(), last=revision))

        try:
            # While the bucket elects a leader (a cluster node died) the write is tried again: a claim that took a
            # message and could not record it would leave the message unavailable for a whole lease.
            return await riding_out(attempt)
        except WrongLastSequence:
            return None

    async def delete(self, item_id: str, revision: int | None = None) -> bool:
        """Delete the record (only if still at ``revision``, when given); False if it moved meanwhile."""
        kv = await self.bucket.kv()
        return await delete_at(kv, Layout.item_key(item_id), revision)


async def delete_at(kv: KeyValue, key: str, revision: int | None) -> bool:
    """Delete ``key`` if it is still at ``revision`` (any revision: None); False if it moved meanwhile."""
    try:
        with nats_edge():
            await kv.delete(key, last=revision)
    except JetStreamError as exc:
        if exc.err_code in WRONG_LAST_SEQUENCE:
            return False
        raise
    return True
