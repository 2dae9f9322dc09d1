"""The work expiry boundary: what the events mover does when an item ran out of deliveries or passed its deadline
(dead-letter it, once), and the poke that makes JetStream notice a last lease that ran out.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Literal, Protocol

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import StoredMsg
from nats_mcp.bus.errors import ResourceNotFound, nats_edge
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.pull import poke
from nats_mcp.bus.streamops import delete_msg
from nats_mcp.coord.checks import timestamp
from nats_mcp.coord.models import WorkItem
from nats_mcp.coord.work.copies import WITHDRAWN
from nats_mcp.coord.work.store import ItemRecord, ItemRecords


class Settler(Protocol):
    """What expiry needs of the work service: its names, records, and the dead-letter steps."""

    conn: NatsConnection
    layout: Layout
    api: str
    records: ItemRecords

    async def load(self, seq: int) -> StoredMsg | None: ...

    async def settle_dead(self, item: WorkItem, record: ItemRecord, *, reply: str | None = None) -> None: ...

    async def dead_letter(
        self,
        item: WorkItem,
        base: ItemRecord,
        revision: int,
        reason: Literal["unrecoverable", "max_attempts", "deadline_passed"],
        attempts: int,
        *,
        reply: str | None = None,
    ) -> bool: ...


class WorkExpiry:
    """The mover's handlers over one namespace's work (see :mod:`nats_mcp.coord.work.events`)."""

    def __init__(self, work: Settler) -> None:
        self._work = work

    async def poke_consumers(self) -> int:
        """Have every consumer with handed-out items check them, so a last lease that ran out raises its
        max-deliveries advisory now (JetStream only checks when it next serves a pull). Returns how many."""
        try:
            with nats_edge():
                consumers = await self._work.conn.jetstream.consumers_info(self._work.layout.work_stream)
        except ResourceNotFound:
            return 0
        busy = [c.name for c in consumers if Layout.parse_work_consumer(c.name) and (c.num_ack_pending or 0) > 0]
        await asyncio.gather(
            *(poke(self._work.conn.client, self._work.layout.work_stream, name, prefix=self._work.api) for name in busy)
        )
        return len(busy)

    async def on_max_deliveries(self, seq: int, deliveries: int) -> None:
        """A message ran out of deliveries (its last lease expired): dead-letter it, once."""
        stored = await self._work.load(seq)
        item = WorkItem.parse(stored.data) if stored is not None else None
        if item is None:
            return  # settled already
        for _ in range(3):
            record, revision = await self._work.records.read(item.id)
            same = record is not None and record.seq == seq
            if record is not None and same and record.cancelled and record.state == "claimed":
                if await self._cancelled(item.id, record, revision, seq):
                    return
                continue
            if record is not None and same and record.state in ("done", *WITHDRAWN):  # settled, or superseded
                await delete_msg(self._work.conn.client, self._work.layout.work_stream, seq, prefix=self._work.api)
                return
            if record is not None and same and record.state == "dead":
                await self._work.settle_dead(item, record)
                return
            errors = list(record.errors) if record is not None and (same or item.attempts > 0) else []
            base = ItemRecord(state="dead", seq=seq, errors=errors, requeue=_requeue_of(record, same))
            holder = record.claimer if record is not None and same else None
            base = base.with_error(
                f"{timestamp()} attempt {item.attempts + deliveries}: lease expired (held by {holder})"
            )
            if await self._work.dead_letter(item, base, revision, "max_attempts", item.attempts + deliveries):
                return

    async def on_deadline(self, item_id: str, seq: int) -> float | None:
        """An item's deadline passed: dead-letter it unless it is settled. Returns a delay to look again after
        when a claimer's lease is still running (it may still complete in time)."""
        stored = await self._work.load(seq)
        item = WorkItem.parse(stored.data) if stored is not None else None
        if item is None or item.id != item_id:
            return None
        for _ in range(3):
            record, revision = await self._work.records.read(item.id)
            same = record is not None and record.seq == seq
            if record is not None and same:
                if record.state == "done":
                    return None
                if record.cancelled and record.state == "claimed":
                    if await self._cancelled(item.id, record, revision, seq):
                        return None
                    continue
                if record.state in WITHDRAWN:  # superseded by a DLQ retry or discard
                    await delete_msg(self._work.conn.client, self._work.layout.work_stream, seq, prefix=self._work.api)
                    return None
                if record.state == "dead":
                    await self._work.settle_dead(item, record)
                    return None
                if record.state == "claimed" and record.lease_expires > time.time():
                    return record.lease_expires - time.time() + 1.0
            errors = list(record.errors) if record is not None and (same or item.attempts > 0) else []
            attempts = record.attempts if record is not None and same else item.attempts
            base = ItemRecord(state="dead", seq=seq, errors=errors, requeue=_requeue_of(record, same))
            if await self._work.dead_letter(item, base, revision, "deadline_passed", attempts):
                return None
        return 1.0

    async def _cancelled(self, item_id: str, record: ItemRecord, revision: int, seq: int) -> bool:
        """A claim whose cancel was asked ran out of time: it is cancelled now (False: the record moved)."""
        gone = replace(record, state="cancelled", settled_at=timestamp(), reply=None, lease_expires=0.0)
        if await self._work.records.write(item_id, gone, revision) is None:
            return False
        await delete_msg(self._work.conn.client, self._work.layout.work_stream, seq, prefix=self._work.api)
        return True


def _requeue_of(record: ItemRecord | None, same: bool) -> str | None:
    """The DLQ retry copy a dead record keeps naming (see :mod:`nats_mcp.coord.work.copies`): the message's own
    record's, or the ``requeued`` record's (whose copy it then is: the mover has no headers to check)."""
    if record is None or not (same or record.state == "requeued"):
        return None
    return record.requeue
