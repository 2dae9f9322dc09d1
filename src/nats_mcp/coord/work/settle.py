"""The claim-settling boundary: a claimer renews its lease, completes or fails its item, or learns it was cancelled.

Every step is decided by a compare-and-set of the item's state record (:mod:`nats_mcp.coord.work.store`), then
the queue message is acknowledged through the reply subject kept in the record, so any server process can
settle any claim. A cancel of a claimed item only marks its record (``cancelled``); the claimer's next
progress, complete or fail turns it into a ``cancelled`` item and answers ``cancelled``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Literal, Protocol

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import StoredMsg
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.pull import AckKind
from nats_mcp.config.coordination import LimitsSettings, WorkSettings
from nats_mcp.coord.checks import check_metadata, iso_epoch, timestamp
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import Cancelled, Conflict, Forbidden, InvalidArgument, NotFound, nats_errors
from nats_mcp.coord.models import WorkItem
from nats_mcp.coord.work.deadlines import disarm_deadline
from nats_mcp.coord.work.deps import DeadReason, Dependencies
from nats_mcp.coord.work.dlq import check_item_id
from nats_mcp.coord.work.store import ItemRecord, ItemRecords
from nats_mcp.core.lru import LruTable

log = logging.getLogger("nats_mcp.coord.work.service")

MAX_REASON = 2_048
MAX_NOTE = 2_048
MAX_REMEMBERED = 10_000
"""Claims this process keeps in memory to settle them without a read."""

Outcome = Literal["retrying", "dead_lettered"]


class Host(Protocol):
    """What settling needs of the work service."""

    conn: NatsConnection
    layout: Layout
    records: ItemRecords
    deps: Dependencies

    @property
    def lease_s(self) -> float: ...

    async def ack(self, reply: str, kind: AckKind, *, delay_s: float | None = None) -> None: ...

    async def load(self, seq: int) -> StoredMsg | None: ...

    async def dead_letter(
        self,
        item: WorkItem,
        base: ItemRecord,
        revision: int,
        reason: DeadReason,
        attempts: int,
        *,
        reply: str | None = None,
    ) -> bool: ...


class ClaimSettling:
    """Progress, complete and fail of claimed items."""

    def __init__(self, host: Host, work: WorkSettings, limits: LimitsSettings) -> None:
        self._host = host
        self._work = work
        self._limits = limits
        self._claims: LruTable[str, tuple[ItemRecord, int]] = LruTable(MAX_REMEMBERED)

    def remember(self, item_id: str, record: ItemRecord, revision: int) -> None:
        """Keep this process's own claims at hand: settling one then needs no read (a stale copy only makes the
        conditional write fail, and the caller reads again)."""
        self._claims.put(item_id, (record, revision))

    async def _owned(self, caller: Caller, item_id: str, *, cached: bool = True) -> tuple[ItemRecord, int]:
        """The caller's live claim on ``item_id``, or the error that says why it is not one."""
        check_item_id(item_id, "workItemId")
        mine = self._claims.pop(item_id) if cached else None
        if mine is not None and mine[0].claimer == caller.guid and mine[0].state == "claimed":
            return mine
        record, revision = await self._host.records.read(item_id)
        if record is None:
            raise NotFound(f"no claimed work item {item_id}: claim it first with warp_work_claim")
        if record.state == "done":
            raise Conflict(f"work item {item_id} is already completed")
        if record.state == "dead":
            raise Conflict(f"work item {item_id} was dead-lettered ({record.reason}); see warp_dlq_list")
        if record.state == "cancelled":
            raise Cancelled(f"work item {item_id} was cancelled; stop working on it")
        if record.claimer != caller.guid:
            raise Forbidden(f"work item {item_id} is claimed by another agent; only its claimer may settle it")
        if record.state != "claimed":
            raise Conflict(f"work item {item_id} was released for a retry; claim it again to work on it")
        if record.cancelled:
            await self.cancel_claimed(item_id, record, revision)
            raise Cancelled(f"work item {item_id} was cancelled by its submitter; stop working on it")
        return record, revision

    async def cancel_claimed(self, item_id: str, record: ItemRecord, revision: int) -> bool:
        """Settle a claim whose cancel was asked: the record becomes ``cancelled``, the message goes. False if the
        record moved meanwhile."""
        gone = replace(record, state="cancelled", settled_at=timestamp(), reply=None, lease_expires=0.0)
        if await self._host.records.write(item_id, gone, revision) is None:
            return False
        if record.reply is not None:
            try:
                await self._host.ack(record.reply, "+TERM")
            except Exception:  # the next delivery meets the cancelled record and is dropped
                log.warning("terminating cancelled work item %s failed", item_id, exc_info=True)
        if record.deadline:
            await disarm_deadline(self._host.conn, self._host.layout, item_id)
        await self._host.deps.on_settled(item_id)
        return True

    async def progress(
        self, caller: Caller, item_id: str, *, progress: int | None = None, note: str | None = None
    ) -> str:
        """Renew the caller's lease on an item (and record progress); returns the new expiry."""
        if progress is not None and (
            isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100
        ):
            raise InvalidArgument("progress must be an integer from 0 to 100")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise InvalidArgument(f"note must be a string of at most {MAX_NOTE} characters")
        with nats_errors():
            for attempt in range(3):
                record, revision = await self._owned(caller, item_id, cached=attempt == 0)
                assert record.reply is not None
                await self._host.ack(record.reply, "+WPI")
                lease = time.time() + self._host.lease_s
                updated = replace(
                    record,
                    lease_expires=lease,
                    progress=progress if progress is not None else record.progress,
                    note=note if note is not None else record.note,
                )
                written = await self._host.records.write(item_id, updated, revision)
                if written is not None:
                    self.remember(item_id, updated, written)
                    return iso_epoch(lease)
        raise Conflict(f"work item {item_id} keeps changing; try again")

    async def complete(self, caller: Caller, item_id: str, result: Any = None) -> None:
        """Finish the caller's item exactly once: the state record decides, then the message is acknowledged."""
        if result is not None:
            check_metadata({"result": result}, self._limits.metadata_bytes, self._limits.metadata_depth)
        with nats_errors():
            for attempt in range(3):
                record, revision = await self._owned(caller, item_id, cached=attempt == 0)
                done = replace(record, state="done", settled_at=timestamp(), result=result, reply=None)
                if await self._host.records.write(item_id, done, revision) is None:
                    continue  # something changed: look again (a second complete now gets conflict)
                assert record.reply is not None
                try:
                    await self._host.ack(record.reply, "+ACK")
                except Exception:  # completed all the same: a re-delivery of it is dropped at claim
                    log.warning("acknowledging completed work item %s failed", item_id, exc_info=True)
                if record.deadline:
                    await disarm_deadline(self._host.conn, self._host.layout, item_id)
                try:
                    await self._host.deps.on_settled(item_id)
                except Exception:  # completed all the same: the sweeper releases its dependents
                    log.warning("releasing the dependents of work item %s failed", item_id, exc_info=True)
                return
        raise Conflict(f"work item {item_id} keeps changing; try again")

    async def fail(self, caller: Caller, item_id: str, reason: str, *, recoverable: bool = True) -> tuple[Outcome, int]:
        """Give an item back for a retry after a backoff, or dead-letter it (unrecoverable, or out of attempts)."""
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
            raise InvalidArgument(f"reason must be a non-empty string of at most {MAX_REASON} characters")
        with nats_errors():
            for attempt in range(3):
                record, revision = await self._owned(caller, item_id, cached=attempt == 0)
                assert record.reply is not None
                failed = record.with_error(f"{timestamp()} attempt {record.attempts} by {caller.guid}: {reason}")
                if not recoverable or record.attempts >= self._work.max_attempts:
                    stored = await self._host.load(record.seq)
                    item = WorkItem.parse(stored.data) if stored is not None else None
                    if item is None:
                        raise NotFound(f"work item {item_id} is no longer queued")
                    why: Literal["unrecoverable", "max_attempts"] = "max_attempts" if recoverable else "unrecoverable"
                    if await self._host.dead_letter(item, failed, revision, why, record.attempts, reply=record.reply):
                        return "dead_lettered", record.attempts
                    continue
                released = replace(failed, state="released", lease_expires=0.0)
                if await self._host.records.write(item_id, released, revision) is None:
                    continue
                steps = self._work.retry_backoff_ms
                delay = steps[min(record.attempts, len(steps)) - 1] / 1000
                await self._host.ack(record.reply, "-NAK", delay_s=delay)
                return "retrying", record.attempts
        raise Conflict(f"work item {item_id} keeps changing; try again")
