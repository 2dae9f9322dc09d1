"""The work read-model boundary: previews of queued items and per-capability queue counts, never claiming anything."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import Batch, DirectGetUnavailable, get_batch
from nats_mcp.bus.errors import ResourceNotFound, nats_edge
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.streamops import get_next
from nats_mcp.coord import capscope
from nats_mcp.coord.checks import iso_epoch, parse_instant
from nats_mcp.coord.errors import InvalidArgument, InvalidCursor, NotFound, nats_errors
from nats_mcp.coord.models import ItemStatus, QueueStatus, WorkItem
from nats_mcp.coord.pagination import int_position, make_cursor, read_cursor
from nats_mcp.coord.work.dlq import DlqService, check_capability
from nats_mcp.coord.work.store import ItemRecord, ItemRecords, ItemState
from nats_mcp.coord.work.submissions import Submissions
from nats_mcp.core.names import NAME_PATTERN, validate_uuid


class WorkSource(Protocol):
    """What the views read through: the work service's connection, names, records and DLQ."""

    conn: NatsConnection
    layout: Layout
    api: str
    records: ItemRecords
    subs: Submissions
    dlq: DlqService

    async def subject_counts(self, cap: str) -> dict[tuple[int, str | None], int]: ...


LIST_TOOL = "warp_work_list"
MAX_LIST_LIMIT = 100
MAX_LIST_SCAN = 2_000
"""Messages a deadline-filtered list examines per call before it returns what it has, with a cursor."""
MAX_FIND_SCAN = 100_000
"""Messages :meth:`WorkViews.may_be_queued` examines before it gives up and answers "maybe"."""
API_TIMEOUT_S = 5.0


_WATCHED_STATE: dict[
    ItemState, Literal["waiting", "claimed", "retrying", "completed", "dead_lettered", "cancelled"]
] = {
    "claimed": "claimed",
    "released": "retrying",
    "done": "completed",
    "dead": "dead_lettered",
    "requeued": "waiting",  # back in its queue by a DLQ retry, not claimed yet
    "discarded": "waiting",  # not shown: item_status reads a discarded item's record as none (_known)
    "cancelled": "cancelled",
}


def _known(read: tuple[ItemRecord | None, int]) -> ItemRecord | None:
    """A record as item_status shows it: a discarded item's (kept against stale copies) reads as forgotten."""
    record, _ = read
    return None if record is not None and record.state == "discarded" else record


@dataclass(frozen=True)
class WorkPage:
    items: list[WorkItem]
    next_cursor: str | None
    has_more: bool
    total: int | None


def _nats_time(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


async def _none() -> None:
    return None


Bounded = tuple[str, str | None]
"""(capability, boundary or None)."""


def _order(key: tuple[int, str | None]) -> tuple[int, bool, str]:
    """The sort key of :func:`claim_order`."""
    return (-key[0], key[1] is not None, key[1] or "")


def claim_order(counts: dict[tuple[int, str | None], int]) -> list[tuple[int, str | None]]:
    """Non-empty (priority, boundary) subjects in the order a claim pulls them: highest priority first, then the
    unbounded items, then boundaries by name."""
    return sorted((k for k, n in counts.items() if n > 0), key=_order)


def _boundary_position(position: dict[str, object]) -> str | None:
    """The boundary a list cursor stopped at ("" or absent: the unbounded items)."""
    value = position.get("b", "")
    if not isinstance(value, str) or (value and NAME.fullmatch(value) is None):
        raise InvalidCursor("the cursor is malformed: pass back nextCursor exactly as a previous call returned it")
    return value or None


NAME = re.compile(NAME_PATTERN)


class WorkViews:
    """Read-only queries over one namespace's work stream, state records and DLQ."""

    def __init__(self, work: WorkSource) -> None:
        self._work = work

    async def list_items(
        self,
        capability: str,
        *,
        min_priority: int | None = None,
        max_priority: int | None = None,
        deadline_before: str | None = None,
        deadline_after: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> WorkPage:
        """Queued items in claim order (priority, then age) without claiming any; O(limit) without deadline filters."""
        cap = check_capability(capability)
        low, high = min_priority or 1, max_priority or 10
        for value in (low, high):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
                raise InvalidArgument("minPriority and maxPriority must be integers from 1 to 10")
        if low > high:
            raise InvalidArgument("minPriority cannot be greater than maxPriority")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidArgument(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}")
        before = parse_instant(deadline_before, "deadlineBefore").timestamp() if deadline_before is not None else None
        after_t = parse_instant(deadline_after, "deadlineAfter").timestamp() if deadline_after is not None else None
        binding = {"capability": cap, "min": low, "max": high, "before": before, "after": after_t}
        resume: tuple[int, str | None] = (high, None)
        after = 0
        if cursor is not None:
            position = read_cursor(cursor, LIST_TOOL, self._work.layout.namespace, binding)
            resume, after = (
                (int_position(position, "p", 1), _boundary_position(position)),
                int_position(position, "after"),
            )
            if not low <= resume[0] <= high:
                raise InvalidArgument("the cursor does not fit these priorities; start over without it")

        def wanted(item: WorkItem) -> bool:
            if before is None and after_t is None:
                return True
            if item.deadline is None:
                return False  # a deadline filter asks for items that have one
            due = parse_instant(item.deadline).timestamp()
            return (before is None or due < before) and (after_t is None or due > after_t)

        filtered = before is not None or after_t is not None
        found: list[tuple[int, WorkItem]] = []
        scanned = 0
        more: tuple[int, str | None, int] | None = None
        with nats_errors():
            # Only the subjects of boundaries the caller may see exist for it: their items and their counts.
            counts = {
                k: n
                for k, n in (await self._work.subject_counts(cap)).items()
                if low <= k[0] <= high and capscope.boundary_visible(cap, k[1])
            }
            keys = [k for k in claim_order(counts) if _order(k) >= _order(resume)]
            if not keys or keys[0] != resume:
                after = 0  # the page stopped on a subject emptied since
            while keys and more is None:
                priority, boundary = keys[0]
                # One more than needed tells whether a next page exists; a filtered list reads in larger steps.
                step = 100 if filtered else limit - len(found) + 1
                batch = await self._list_batch(cap, priority, boundary, after, step)
                for stored in batch.messages:
                    if len(found) == limit or scanned >= MAX_LIST_SCAN:
                        more = (priority, boundary, after)
                        break
                    scanned += 1
                    after = stored.seq
                    item = WorkItem.parse(stored.data)
                    if item is not None and wanted(item):
                        found.append((stored.seq, item))
                else:
                    if batch.at_end or not batch.messages:
                        keys, after = keys[1:], 0
            items = await self._with_state(found)
        total = sum(counts.values()) if before is None and after_t is None else None
        next_cursor = (
            make_cursor(
                LIST_TOOL, self._work.layout.namespace, binding, {"p": more[0], "b": more[1] or "", "after": more[2]}
            )
            if more
            else None
        )
        return WorkPage(items, next_cursor, more is not None, total)

    async def may_be_queued(self, item_id: str) -> bool:
        """Whether ``item_id`` may be waiting in a queue: False only when a scan of every queue found no such item.

        Queued items have no state record until claimed, and the stream has no index by item id, so this reads
        the whole work stream (headers and bodies, in large batches): meant for a one-off question such as "does
        this id exist?", not for polling. A stream too large to scan, or a batch that arrived broken, answers True.
        """
        needle = item_id.encode()
        after, scanned = 0, 0
        with nats_errors():
            while scanned < MAX_FIND_SCAN:
                try:
                    batch = await get_batch(
                        self._work.conn.client,
                        self._work.layout.work_stream,
                        after + 1,
                        1000,
                        subject=self._work.layout.work_subjects,
                        max_bytes=4 * 1024 * 1024,
                        partial=True,
                        prefix=self._work.api,
                        timeout=API_TIMEOUT_S,
                    )
                except DirectGetUnavailable:
                    return False  # no work stream: nothing was ever queued
                for stored in batch.messages:
                    if needle in stored.data:  # cheap test first; the id then has to be the item's own
                        item = WorkItem.parse(stored.data)
                        if item is not None and item.id == item_id:
                            return True
                scanned += len(batch.messages)
                if batch.at_end:
                    return False
                if not batch.messages:
                    return True  # a broken batch: cannot tell
                after = batch.messages[-1].seq
        return True

    async def _list_batch(self, cap: str, priority: int, boundary: str | None, after: int, count: int) -> Batch:
        try:
            return await get_batch(
                self._work.conn.client,
                self._work.layout.work_stream,
                after + 1,
                max(count, 1),
                subject=self._work.layout.work_subject(cap, priority, boundary),
                max_bytes=4 * 1024 * 1024,
                partial=True,
                prefix=self._work.api,
                timeout=API_TIMEOUT_S,
            )
        except DirectGetUnavailable:
            return Batch([], 0)

    async def _with_state(self, found: list[tuple[int, WorkItem]]) -> list[WorkItem]:
        """Items as a claimer would see them now: attempts so far, and the lease of a claimed one."""
        records = await asyncio.gather(*(self._work.records.read(item.id) for _, item in found))
        shown: list[WorkItem] = []
        for (seq, item), (record, _) in zip(found, records, strict=True):
            if record is not None and record.seq == seq:
                lease = iso_epoch(record.lease_expires) if record.state == "claimed" else None
                item = item.model_copy(update={"attempts": record.attempts, "leaseExpiresAt": lease})
            shown.append(item)
        return shown

    async def boundary_counts(self, capability: str | None = None) -> dict[Bounded, tuple[int, int]]:
        """(pending, in flight) per (capability, boundary) with items, of the namespace (or one capability); only
        boundaries the running call may see (the fleet's snapshot reads them all)."""
        cap = check_capability(capability) if capability is not None else None
        js, layout = self._work.conn.jetstream, self._work.layout
        with nats_errors():
            try:
                with nats_edge():
                    filtered = layout.work_subject(cap) if cap else layout.work_subjects
                    info = await js.stream_info(layout.work_stream, subjects_filter=filtered)
                    consumers = await js.consumers_info(layout.work_stream)
            except ResourceNotFound:
                info, consumers = None, []
        stored: dict[Bounded, int] = {}
        for subject, n in ((info.state.subjects or {}) if info else {}).items():
            parsed = layout.parse_work_subject(subject)
            if parsed is not None:
                stored[(parsed[0], parsed[2])] = stored.get((parsed[0], parsed[2]), 0) + n
        in_flight: dict[Bounded, int] = {}
        for consumer in consumers:
            named = Layout.parse_work_consumer(consumer.name)
            if named is not None and (cap is None or named[0] == cap):
                key = (named[0], named[2])
                in_flight[key] = in_flight.get(key, 0) + int(consumer.num_ack_pending or 0)
        # Items of a boundary the caller may not see are left out of every count, as if they did not exist.
        return {
            k: (max(stored.get(k, 0) - in_flight.get(k, 0), 0), min(in_flight.get(k, 0), stored.get(k, 0)))
            for k in sorted(set(stored) | set(in_flight), key=lambda k: (k[0], k[1] is not None, k[1] or ""))
            if capscope.boundary_visible(*k)  # (a queue with a consumer and nothing stored is listed, with zeros)
        }

    async def status(self, capability: str | None = None) -> list[QueueStatus]:
        """Pending, in flight, dead-lettered and oldest age per capability of the namespace (or just one)."""
        cap = check_capability(capability) if capability is not None else None
        counts = await self.boundary_counts(cap)
        with nats_errors():
            dead = await self._work.dlq.counts()
            names = sorted(({k[0] for k in counts} | set(dead)) if cap is None else {cap})
            names = [n for n in names if capscope.visible(n)]  # the caller's policy may grant only some
            ages = await asyncio.gather(*(self._oldest(k) if sum(n) else _none() for k, n in counts.items()))
        oldest: dict[str, float] = {}
        for (name, _), age in zip(counts, ages, strict=True):
            if age is not None:
                oldest[name] = max(age, oldest.get(name, age))
        return [
            QueueStatus(
                capability=name,
                pending=sum(p for k, (p, _) in counts.items() if k[0] == name),
                inFlight=sum(f for k, (_, f) in counts.items() if k[0] == name),
                deadLettered=dead.get(name, 0),
                oldestPendingSeconds=oldest.get(name),
            )
            for name in names
        ]

    async def _oldest(self, key: Bounded) -> float | None:
        """Age of the oldest stored message of one capability's boundary, over its priorities."""
        layout = self._work.layout
        first = await get_next(
            self._work.conn.client,
            layout.work_stream,
            1,
            layout.work_boundary_subjects(*key),
            prefix=self._work.api,
            timeout=API_TIMEOUT_S,
        )
        stamp = _nats_time(first.time) if first is not None else None
        return round(max(time.time() - stamp, 0.0), 3) if stamp is not None else None

    async def item_status(self, item_id: str, *, must_exist: bool = False) -> ItemStatus:
        """Where ``item_id`` stands: its state record, else its DLQ entry, else waiting (never claimed yet).

        With ``must_exist``, an id that is in none of these nor in a queue is NotFound rather than "waiting"; that
        costs a scan of the queues (:meth:`WorkViews.may_be_queued`), so a watcher asks it once, then polls.
        """
        validate_uuid(item_id, "workItemId")
        with nats_errors():
            record = _known(await self._work.records.read(item_id))
            found = None if record is not None else await self._work.dlq.find(item_id)
            submitted = record is None and found is None and (await self._work.subs.read(item_id))[0] is not None
            if (
                record is None
                and found is None
                and must_exist
                and not submitted
                and not await self.may_be_queued(item_id)
            ):
                # Claimed (and maybe settled) while the queues were read: it left the queue but has a record now.
                record = _known(await self._work.records.read(item_id))
                found = None if record is not None else await self._work.dlq.find(item_id)
                if record is None and found is None:
                    raise NotFound(
                        f"work item {item_id} not found: it was never queued in this namespace, or it "
                        "was settled long enough ago to be forgotten"
                    )
            if record is None:
                if found is None:
                    return ItemStatus(id=item_id, state="waiting")
                entry = found[1]
                return ItemStatus(
                    id=item_id,
                    state="dead_lettered",
                    attempts=entry.attempts,
                    reason=entry.reason,
                    errors=entry.errors,
                    settledAt=entry.failedAt,
                )
        state = _WATCHED_STATE[record.state]
        return ItemStatus(
            id=item_id,
            state=state,
            claimer=record.claimer,
            attempts=record.attempts or record.delivered,
            progress=record.progress,
            note=record.note,
            reason=record.reason,
            errors=record.errors,
            settledAt=record.settled_at,
            result=record.result,
        )
