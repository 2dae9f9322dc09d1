"""The dead-letter boundary: the namespace's DLQ stream, entries written once, listed in pages, retried or discarded.

Each entry has its own subject (``Layout.dlq_subject(capability, item_id[, boundary])``) and is written with
``Nats-Expected-Last-Subject-Sequence: 0``, so however often a crashed mover repeats a step an item
is dead-lettered at most once, and it is found by id without a scan. Entries expire after
``work.dlq_ttl_ms``.

A retry never leaves an item in both places and never loses it, even if the process dies half way.
Its steps: (1) the item goes into a ``requeue.<id>`` intent in the work-state bucket (created: one
retry per item at a time); (2) the decision: the item's ``dead`` record becomes ``requeued``, naming the
copy the retry publishes by its ``Nats-Msg-Id`` ``requeue-<id>-<DLQ seq>`` (compare-and-set: of a retry
and a discard one wins); (3) the queue message the item died with goes (a process that died after
writing the DLQ entry may have left it stored); (4) the DLQ entry goes; (5) the copy is published;
(6) the intent goes. Every step can be done again: a retry of the item sent again (the agent's call was
cut off) finishes an intent it finds at once, and every server process's events mover finishes intents
older than ``RECOVER_AFTER_S`` (:meth:`DlqService.recover`), so an abandoned retry is finished within
about ``RECOVER_AFTER_S`` plus one mover round (bench/dlq_recover.py). A discard is (2) to ``discarded``,
(3), (4).

The two windows this closes (issue 21; tests/integration/test_work_crash.py builds each state):

* Window 1, a stale settle. A dead-letterer that died after the DLQ entry but before removing the queue
  message leaves it stored; its lease runs out and a claim pulls it again (C1) and reads the ``dead``
  record (C2). A retry runs to the end in between: (1)-(6). The claim then settles the dead item (C3):
  it wrote the DLQ entry again (the item in the DLQ and in the queue) or, after a reset retry that
  deleted the record, handed the leftover out beside the copy. Now: a claim (or the mover) that reads a
  ``requeued``/``discarded`` record for the message it holds drops the message
  (:func:`nats_mcp.coord.work.copies.stale_copy`); a C2 made before (2) and a C3 after (4) is caught by
  :meth:`DlqService.file`: the entry it wrote is followed by a record that is no longer ``dead``, and
  goes again. Left: a process killed in the one round trip between that write and its removal leaves
  the entry listed; a retry or discard of it finds the record not ``dead``, removes it and answers
  not_found (the item is requeued once, never killed).
* Window 2, a finish after the duplicate window. A retry cut after (5) leaves its intent; whoever
  finishes it published the copy again, relying on the 120 s ``Nats-Msg-Id`` window: past it, the item
  was queued twice. Now the finisher publishes only if no copy is out: the record names a claimed copy
  (it moved on from ``requeued``), or the item's queue subject is looked through for an unclaimed one
  by its ``Nats-Msg-Id``. A second copy stored anyway (by an older release) is dropped by the claim
  that meets it: the record still names the first copy's id and has moved on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from nats_mcp.bus import specs
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import DirectGetUnavailable, StoredMsg, api_prefix, get_batch
from nats_mcp.bus.errors import JetStreamError, KeyNotFound, ResourceNotFound, WrongLastSequence, nats_edge
from nats_mcp.bus.jstypes import KeyValue
from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.publish import EXPECT_LAST_SUBJECT_SEQ, store
from nats_mcp.bus.setup import ensure_stream
from nats_mcp.bus.streamops import delete_msg, get_next
from nats_mcp.config.settings import Settings
from nats_mcp.coord import capscope
from nats_mcp.coord.checks import dumps, parse_instant, timestamp
from nats_mcp.coord.errors import Conflict, InvalidArgument, InvalidName, NotFound
from nats_mcp.coord.models import DlqItem, WorkItem
from nats_mcp.coord.pagination import int_position, make_cursor, read_cursor
from nats_mcp.coord.work.copies import requeue_token
from nats_mcp.coord.work.store import ItemRecord, ItemRecords, delete_at
from nats_mcp.core.names import InvalidNameError, validate_name, validate_type_name, validate_uuid

log = logging.getLogger("nats_mcp.coord.work.dlq")

LIST_TOOL = "warp_dlq_list"
MAX_LIST_LIMIT = 100
API_TIMEOUT_S = 5.0
BATCH_MAX_BYTES = 4 * 1024 * 1024
RECOVER_AFTER_S = 2.0
"""A requeue intent older than this is taken to be left behind by a process that died (a live retry takes a few
round trips; one finished twice at once is harmless: every step is re-doable and both copies share a Nats-Msg-Id)."""
COPY_SCAN_BATCH = 100

Publish = Callable[[WorkItem, str], Awaitable[None]]
"""Put an item (back) on its queue with the given Nats-Msg-Id."""


@dataclass(frozen=True)
class DlqPage:
    items: list[DlqItem]
    next_cursor: str | None
    has_more: bool
    total: int | None


def check_item_id(item_id: object, what: str = "itemId") -> str:
    try:
        return validate_uuid(item_id, what)
    except InvalidNameError as exc:
        raise InvalidArgument(str(exc)) from None


def check_capability(capability: object) -> str:
    try:
        return validate_type_name(capability, "capability")
    except InvalidNameError as exc:
        raise InvalidName(str(exc)) from None


def check_boundary(boundary: object) -> str:
    """A work boundary's name (a label such as ``corporate``: a-z, 0-9, '-'), or InvalidName."""
    try:
        return validate_name(boundary, "boundary")
    except InvalidNameError as exc:
        raise InvalidName(str(exc)) from None


def parse_entry(data: bytes) -> DlqItem | None:
    try:
        return DlqItem.model_validate_json(data)
    except ValueError:
        return None


class DlqService:
    """The DLQ of one namespace."""

    def __init__(self, conn: NatsConnection, settings: Settings, layout: Layout, state: Bucket) -> None:
        self._conn = conn
        self._settings = settings
        self._layout = layout
        self._state = state
        self._records = ItemRecords(state)
        self._api = api_prefix(settings.nats.jetstream_domain)

    async def ensure(self) -> None:
        ttl = self._settings.work.dlq_ttl_ms / 1000
        await ensure_stream(
            self._conn.jetstream,
            specs.dlq_stream(self._layout, ttl_s=ttl),
            replicas=self._conn.replicas,
        )

    # -- writing ---------------------------------------------------------------------------------

    async def add(self, entry: DlqItem) -> int | None:
        """Store an entry unless the item already has one: its sequence if this call stored it."""
        subject = self._layout.dlq_subject(entry.workItem.capability, entry.id, entry.workItem.boundary)
        try:
            seq = await store(
                self._conn.jetstream,
                subject,
                dumps(entry.model_dump(exclude_none=True)),
                stream=self._layout.dlq_stream,
                headers={EXPECT_LAST_SUBJECT_SEQ: "0"},
                timeout=API_TIMEOUT_S,
            )
        except JetStreamError as exc:
            if exc.err_code == 10071:  # wrong last sequence: the entry is there already
                return None
            raise
        log.info("work item %s dead-lettered (%s)", entry.id, entry.reason)
        return seq

    # -- reading ---------------------------------------------------------------------------------

    async def find(self, item_id: str) -> tuple[StoredMsg, DlqItem] | None:
        # One direct get per subject form (an unbounded item's, a bounded one's), at once.
        subject = self._layout.dlq_subject("*", item_id)
        found = await asyncio.gather(
            *(
                get_next(self._conn.client, self._layout.dlq_stream, 1, s, prefix=self._api, timeout=API_TIMEOUT_S)
                for s in (subject, f"{subject}.*")
            )
        )
        stored = found[0] or found[1]
        if stored is None:
            return None
        entry = parse_entry(stored.data)
        return (stored, entry) if entry is not None else None

    async def page(self, capability: str | None, limit: int, cursor: str | None) -> DlqPage:
        """Entries oldest first, ``limit`` at a time; a cursor is bound to the capability filter."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidArgument(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}")
        cap = check_capability(capability) if capability is not None else None
        binding = {"capability": cap}
        after = seen = 0
        if cursor is not None:
            position = read_cursor(cursor, LIST_TOOL, self._layout.namespace, binding)
            after, seen = int_position(position, "after"), int_position(position, "seen")
        try:
            batch = await get_batch(
                self._conn.client,
                self._layout.dlq_stream,
                after + 1,
                limit,
                subject=self._layout.dlq_filter(cap),
                max_bytes=BATCH_MAX_BYTES,
                partial=True,
                prefix=self._api,
                timeout=API_TIMEOUT_S,
            )
        except DirectGetUnavailable:
            return DlqPage([], None, False, 0)
        items = [entry for stored in batch.messages if (entry := parse_entry(stored.data)) is not None]
        # A caller granted only some capabilities sees only their entries, and no total that counts the others.
        hidden = cap is None and capscope.narrowed()
        if hidden:
            items = [entry for entry in items if capscope.visible(entry.workItem.capability)]
        # Entries of a boundary the caller may not see are left out, and from the total (counted by their subjects).
        items = [e for e in items if capscope.boundary_visible(e.workItem.capability, e.workItem.boundary)]
        more = not batch.at_end and bool(batch.messages)
        last = batch.messages[-1].seq if batch.messages else after
        shown = seen + len(batch.messages)
        total = shown + batch.pending if batch.complete and not hidden else None
        if total is not None and capscope.boundaries_narrowed():
            dead = await self.counts()
            total = dead.get(cap, 0) if cap is not None else sum(dead.values())
        return DlqPage(
            items=items,
            next_cursor=make_cursor(LIST_TOOL, self._layout.namespace, binding, {"after": last, "seen": shown})
            if more
            else None,
            has_more=more,
            total=total,
        )

    async def counts(self) -> dict[str, int]:
        """Dead-lettered items per capability, of the boundaries the running call may see."""
        try:
            with nats_edge():
                info = await self._conn.jetstream.stream_info(self._layout.dlq_stream, subjects_filter=">")
        except ResourceNotFound:
            return {}
        counts: dict[str, int] = {}
        for subject, n in (info.state.subjects or {}).items():
            parts = subject.split(".")
            if len(parts) in (5, 6) and capscope.boundary_visible(parts[3], parts[5] if len(parts) == 6 else None):
                counts[parts[3]] = counts.get(parts[3], 0) + n
        return counts

    # -- retry, discard --------------------------------------------------------------------------

    async def file(self, entry: DlqItem, work_seq: int) -> int | None:
        """Write the entry of an item whose record says it died with the message at ``work_seq`` (window 1 of the
        module docstring): an entry written after a retry or discard took the item out of the DLQ goes again at
        once, by its own sequence. Returns the sequence of an entry this call wrote and kept."""
        seq = await self.add(entry)
        if seq is None:
            return None
        record, _ = await self._records.read(entry.id)
        if record is not None and record.state == "dead":
            return seq  # (dead through a later message too: the item needs an entry, and this is it)
        log.info(
            "work item %s left the DLQ while its dead message %d was settled; dropping the entry", entry.id, work_seq
        )
        await self._delete(seq)
        return None

    async def retry(self, item_id: str, reset_attempts: bool, publish: Publish) -> WorkItem:
        """Move an entry back to its queue: exactly once, never in both places, never lost. A retry of the item that
        a dying process left half done (the agent sends its call again) is finished instead."""
        check_item_id(item_id)
        kv = await self._state.kv()
        key = Layout.requeue_key(item_id)
        for _ in range(3):
            left = await self._intent(kv, key)
            if left is not None:
                finished = await self._take_over(kv, key, *left, publish)
                if finished is not None:
                    return finished
                continue  # it moved on meanwhile: look again
            found = await self.find(item_id)
            if found is None:
                raise NotFound(f"no dead-lettered item {item_id} (see warp_dlq_list)")
            stored, entry = found
            record, _ = await self._records.read(item_id)
            if record is not None and record.state != "dead":
                await self._delete(stored.seq)  # written by a settle cut off before it saw the item leave the DLQ
                raise NotFound(f"dead-lettered item {item_id} was retried or discarded meanwhile")
            item = entry.workItem.model_copy(update={"attempts": 0 if reset_attempts else entry.attempts})
            if item.deadline is not None and _past(item.deadline):
                item = item.model_copy(update={"deadline": None})  # a retry of a missed deadline gets no deadline
            intent = {
                "dlqSeq": stored.seq,
                "workSeq": record.seq if record is not None else None,
                "reset": reset_attempts,
                "at": time.time(),
                "item": item.model_dump(),
            }
            try:
                with nats_edge():
                    revision = await kv.create(key, dumps(intent))
            except WrongLastSequence:
                continue  # another retry of the item began meanwhile: finish that one
            try:
                if not await self._leave_dead(intent):
                    await delete_at(kv, key, revision)
                    raise NotFound(f"dead-lettered item {item_id} was discarded meanwhile")
                await self._finish(kv, key, intent, publish, again=False)
            except NotFound:
                raise
            except Exception:
                log.warning("retry of %s interrupted; the requeue intent finishes it later", item_id, exc_info=True)
                raise
            return item
        raise Conflict(f"item {item_id} keeps changing; try again")

    async def _intent(self, kv: KeyValue, key: str) -> tuple[dict[str, Any], int] | None:
        """A requeue intent left under ``key`` and its revision (None: there is none; an unreadable one is dropped)."""
        try:
            with nats_edge():
                found = await kv.get(key)
        except KeyNotFound:  # also a deleted one
            return None
        try:
            intent = json.loads(found.value or b"")
            WorkItem.model_validate(intent["item"])
            int(intent["dlqSeq"])
        except (ValueError, KeyError, TypeError):
            log.warning("dropping unreadable requeue intent %s", key)
            await kv.delete(key)
            return None
        return intent, int(found.revision or 0)

    async def _take_over(
        self, kv: KeyValue, key: str, intent: dict[str, Any], revision: int, publish: Publish
    ) -> WorkItem | None:
        """Finish a retry another call began. Its intent is rewritten first (at the revision read), so of two
        processes taking it over one goes on. None when the intent moved meanwhile, or the item was discarded
        before that retry marked it (the intent is then dropped)."""
        try:
            with nats_edge():
                revision = await kv.update(key, dumps(intent), last=revision)
        except WrongLastSequence:
            return None
        if not await self._leave_dead(intent):
            await delete_at(kv, key, revision)
            return None
        await self._finish(kv, key, intent, publish, again=True)
        return WorkItem.model_validate(intent["item"])

    async def _leave_dead(self, intent: dict[str, Any]) -> bool:
        """The retry's decision: the item's dead record becomes a ``requeued`` one that names the retry's copy, by
        compare-and-set, so of a retry and a discard (or a stale settle) exactly one wins. True when the record
        says this retry won, now or earlier (its own mark, or what a claim of its copy wrote since)."""
        item = WorkItem.model_validate(intent["item"])
        token = requeue_token(item.id, int(intent["dlqSeq"]))
        for _ in range(3):
            record, revision = await self._records.read(item.id)
            if record is not None and record.requeue == token:
                return True
            if record is not None and record.state != "dead":
                return False
            if record is None:
                mark = ItemRecord(state="requeued", seq=int(intent.get("workSeq") or 0), requeue=token)
            else:
                mark = replace(record, state="requeued", requeue=token, settled_at=timestamp())
                if intent.get("reset"):
                    mark = replace(mark, errors=[], attempts=0, reason=None)
            if await self._records.write(item.id, mark, revision) is not None:
                return True
        raise Conflict(f"item {item.id} keeps changing; try again")

    async def _finish(self, kv: KeyValue, key: str, intent: dict[str, Any], publish: Publish, *, again: bool) -> None:
        """The steps after the decision, each re-doable: the leftover queue message and the DLQ entry go, the copy
        is published, the intent goes. Finishing ``again`` publishes only if no copy is claimed or queued yet."""
        await self._drop_stale(intent)
        await self._delete(int(intent["dlqSeq"]))  # False: expired, or taken by the call being finished
        item = WorkItem.model_validate(intent["item"])
        token = requeue_token(item.id, int(intent["dlqSeq"]))
        if not again or not await self._copy_published(item, token, int(intent.get("workSeq") or 0)):
            await publish(item, token)
        await kv.delete(key)

    async def _copy_published(self, item: WorkItem, token: str, after: int) -> bool:
        """Whether the retry's copy is in the queue or was claimed from it (window 2 of the module docstring): the
        record names a claimed copy; an unclaimed one is looked for on the item's queue subject, by its
        ``Nats-Msg-Id``, after the message the item died with. Only a retry finished by another call does this:
        one batched direct get per ``COPY_SCAN_BATCH`` items waiting at the item's capability and priority."""
        record, _ = await self._records.read(item.id)
        if record is not None and record.requeue == token and record.state != "requeued":
            return True
        start = after + 1
        while True:
            try:
                batch = await get_batch(
                    self._conn.client,
                    self._layout.work_stream,
                    start,
                    COPY_SCAN_BATCH,
                    subject=self._layout.work_subject(item.capability, item.priority, item.boundary),
                    max_bytes=BATCH_MAX_BYTES,
                    partial=True,
                    prefix=self._api,
                    timeout=API_TIMEOUT_S,
                )
            except DirectGetUnavailable:
                return False  # no queue yet
            if any(stored.msg_id == token for stored in batch.messages):
                return True
            if batch.at_end or not batch.messages:
                return False
            start = batch.messages[-1].seq + 1

    async def _drop_stale(self, intent: dict[str, Any]) -> None:
        """The dead item's queue message goes first: a process that died after writing the DLQ entry but before
        removing it leaves it stored, and its next delivery would hand the item out beside the requeued copy."""
        if intent.get("workSeq"):
            await delete_msg(
                self._conn.client,
                self._layout.work_stream,
                int(intent["workSeq"]),
                prefix=self._api,
                timeout=API_TIMEOUT_S,
            )

    async def discard(self, item_id: str) -> None:
        """Drop an entry for good. Like a retry, the record decides first (``discarded``, which also keeps a leftover
        queue message of the item from being handed out); a discard cut off after that is finished by the next."""
        check_item_id(item_id)
        found = await self.find(item_id)
        if found is None:
            raise NotFound(f"no dead-lettered item {item_id} (see warp_dlq_list)")
        kv = await self._state.kv()
        try:
            with nats_edge():
                await kv.get(Layout.requeue_key(item_id))
                raise Conflict(f"item {item_id} is being retried; it is no longer in the DLQ")
        except KeyNotFound:
            pass
        for _ in range(3):
            record, revision = await self._records.read(item_id)
            if record is not None and record.state not in ("dead", "discarded"):
                await self._delete(found[0].seq)  # written by a settle cut off before it saw the item leave the DLQ
                raise NotFound(f"dead-lettered item {item_id} was retried meanwhile; it is no longer in the DLQ")
            if record is None or record.state == "discarded":
                break
            gone = replace(record, state="discarded", settled_at=timestamp())
            if await self._records.write(item_id, gone, revision) is not None:
                break
        else:
            raise Conflict(f"item {item_id} keeps changing; try again")
        await self._drop_stale({"workSeq": record.seq if record is not None else None})
        if not await self._delete(found[0].seq):
            raise NotFound(f"dead-lettered item {item_id} was retried, discarded or expired meanwhile")

    async def _delete(self, seq: int) -> bool:
        return await delete_msg(
            self._conn.client, self._layout.dlq_stream, seq, prefix=self._api, timeout=API_TIMEOUT_S
        )

    async def recover(self, publish: Publish, *, older_than_s: float = RECOVER_AFTER_S) -> int:
        """Finish retries whose process died half way; returns how many were finished."""
        kv = await self._state.kv()
        # Asked of the stream, so the cost is the number of intents, not of all item records (nats-py's
        # keys() would watch the whole bucket). Deleted intents leave markers: their get says not found.
        prefix = f"$KV.{self._state.name}."
        info = await self._conn.jetstream.stream_info(f"KV_{self._state.name}", subjects_filter=f"{prefix}requeue.*")
        keys = [subject.removeprefix(prefix) for subject in (info.state.subjects or {})]
        finished = 0
        for key in keys:
            left = await self._intent(kv, key)
            if left is None or time.time() - float(left[0].get("at", 0)) < older_than_s:
                continue
            item = await self._take_over(kv, key, *left, publish)
            if item is not None:
                log.info("finished the interrupted retry of work item %s", item.id)
                finished += 1
        return finished


def _past(deadline: str) -> bool:
    return parse_instant(deadline).timestamp() <= time.time()
