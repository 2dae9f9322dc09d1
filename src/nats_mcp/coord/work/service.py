"""The work-distribution boundary: capability queues with priorities, deadlines, leases, completion and failure.

Storage (all per namespace, names from :class:`~nats_mcp.bus.layout.Layout`):

* one WorkQueue stream, one subject per (capability, priority, boundary), one durable pull consumer per subject
  (``ack_wait`` = the lease, ``max_deliver`` = ``work.max_attempts``); an item of a boundary (``corporate``, ...)
  lives on its own subject, so a claim pulls only from the consumers of boundaries its caller may take
  (:mod:`nats_mcp.coord.capscope`) and never receives, even briefly, an item it may not see;
* a state record per handed-out item (:mod:`nats_mcp.coord.work.store`), changed by compare-and-set:
  the decision point of every transition;
* a submission record per broadcast item (:mod:`nats_mcp.coord.work.submissions`): its submitter for
  ``warp_work_get`` and ``warp_work_cancel``, and an item blocked on ``dependsOn`` until it is released
  (:mod:`nats_mcp.coord.work.deps`);
* the DLQ (:mod:`nats_mcp.coord.work.dlq`), and an events stream that durably captures the work stream's
  max-delivery advisories and each item's deadline timer, for :mod:`nats_mcp.coord.work.events`.

A claim asks the stream which (priority, boundary) subjects of the capability hold messages (one
request) and pulls from the highest priority first, unbounded items before bounded ones within a
priority, so its cost does not grow with the number of waiting items. Within a subject JetStream
delivers oldest first. Nothing here needs a coordinator process: any server
process can settle any item, because acknowledgements go to the reply subject kept in the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import Any, get_args

from nats_mcp.bus import specs
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import StoredMsg, api_prefix
from nats_mcp.bus.errors import PayloadTooLargeError, ResourceNotFound, nats_edge
from nats_mcp.bus.jstypes import Msg
from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.publish import MSG_ID, store
from nats_mcp.bus.pull import AckKind, Delivery, PullError, ack, pull
from nats_mcp.bus.setup import ensure_consumer, ensure_stream
from nats_mcp.bus.streamops import delete_msg, get_next
from nats_mcp.config.settings import Settings
from nats_mcp.coord import capscope
from nats_mcp.coord.checks import dumps, iso_epoch, parse_instant, timestamp
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import InvalidArgument, LimitExceeded, nats_errors
from nats_mcp.coord.models import DlqItem, Scope, WorkItem
from nats_mcp.coord.work.cancel import CancelOutcome, cancel
from nats_mcp.coord.work.copies import copy_token, stale_copy
from nats_mcp.coord.work.deadlines import arm_deadline, disarm_deadline
from nats_mcp.coord.work.deps import DeadReason, Dependencies, check_depends_on
from nats_mcp.coord.work.dlq import DlqService, check_capability
from nats_mcp.coord.work.expiry import WorkExpiry
from nats_mcp.coord.work.items import new_item
from nats_mcp.coord.work.lookup import WorkLookup
from nats_mcp.coord.work.settle import ClaimSettling, Outcome
from nats_mcp.coord.work.store import ItemRecord, ItemRecords
from nats_mcp.coord.work.submissions import Submission, Submissions
from nats_mcp.coord.work.views import WorkViews, claim_order

log = logging.getLogger("nats_mcp.coord.work.service")

API_TIMEOUT_S = 5.0
STATE_TTL_S = 7 * 86_400.0
"""Minimum life of an item's state record (at least the DLQ's TTL): a second complete within it is a conflict."""
POLL_S = 0.5
"""While items of the capability are in flight, a waiting claim looks again this often (re-offers are silent)."""
MAX_CLAIM_TIMEOUT_MS = 30_000
MAX_BATCH = 50
RECHECK_S = POLL_S
"""Right after a waiting claim subscribed, when its look found nothing: look again this soon (an item published just
before the subscription may be stored after that look)."""
FIRST_PULL_WAIT_S = 0.02
"""A pull sent right after a publish can miss it (the consumer learns of new messages asynchronously,
nats-server 2.15.1): the first look at a priority that holds messages waits this long for one."""


class WorkService:
    """Work queues, the DLQ and item state of one namespace."""

    def __init__(self, conn: NatsConnection, settings: Settings, layout: Layout) -> None:
        self._conn = conn
        self.conn = conn
        self._settings = settings
        self._work = settings.work
        self._limits = settings.limits
        self.layout = layout
        self.api = api_prefix(settings.nats.jetstream_domain)
        ttl = max(STATE_TTL_S, settings.work.dlq_ttl_ms / 1000)
        self.state = Bucket.declared(conn, specs.work_state_bucket(layout, ttl_s=ttl))
        self.records = ItemRecords(self.state)
        self.dlq = DlqService(conn, settings, layout, self.state)
        self._consumers: set[tuple[str, int, str | None]] = set()
        """(capability, priority, boundary) consumers this process has created or brought to the configured settings."""
        self.views = WorkViews(self)
        self.expiry = WorkExpiry(self)
        self.subs = Submissions(self.state, self.api)
        self.deps = Dependencies(self, self.subs)
        self.deps.on_retry(lambda item_id: self.dlq_retry(item_id, False))
        self.settling = ClaimSettling(self, settings.work, settings.limits)
        self.lookup = WorkLookup(self)

    @property
    def lease_s(self) -> float:
        return self._work.ack_timeout_ms / 1000

    # -- setup -----------------------------------------------------------------------------------

    async def ensure(self) -> None:
        """Create (or bring to the settings) the work stream, the events stream and its consumer, the DLQ, the state
        bucket. Runs when the server connects, so the DLQ and the advisory capture exist before any work does."""
        js, lay = self._conn.jetstream, self.layout
        # The consumers this process made stay known across reconnects: making one again needs the meta leader,
        # which is being elected right after a cluster node died, and broadcasts waited on it (a pull that finds
        # a consumer gone makes it again, so a server that lost its store is still served).
        await ensure_stream(js, specs.work_stream(lay, max_bytes=self._work.max_bytes), replicas=self._conn.replicas)
        await ensure_stream(js, specs.work_events_stream(lay), replicas=self._conn.replicas)
        await ensure_consumer(js, lay.events_stream, specs.mover_consumer(lay))
        await self.dlq.ensure()
        await self.state.kv()

    async def _ensure_consumer(self, capability: str, priority: int, boundary: str | None) -> None:
        if (capability, priority, boundary) in self._consumers:
            return
        config = specs.work_consumer(
            self.layout,
            capability,
            priority,
            ack_wait_s=self.lease_s,
            max_deliver=self._work.max_attempts,
            boundary=boundary,
        )
        await ensure_consumer(self._conn.jetstream, self.layout.work_stream, config)
        self._consumers.add((capability, priority, boundary))

    # -- broadcast -------------------------------------------------------------------------------

    async def broadcast(
        self,
        caller: Caller,
        *,
        task_id: str,
        description: str,
        capability: str,
        priority: int = 5,
        deadline: str | None = None,
        context_data: dict[str, Any] | None = None,
        scope: Scope | None = None,
        depends_on: list[str] | None = None,
        boundary: str | None = None,
    ) -> WorkItem:
        """Queue a new item for agents with ``capability`` (blocked until ``depends_on`` items complete), only for
        takers of ``boundary`` if given; nothing is stored when an argument is bad."""
        deps = check_depends_on(depends_on) if depends_on is not None else None
        item = new_item(
            caller,
            self._limits,
            task_id=task_id,
            description=description,
            capability=capability,
            priority=priority,
            deadline=deadline,
            context_data=context_data,
            scope=scope,
            boundary=boundary,
        ).model_copy(update={"dependsOn": deps})
        with nats_errors():
            if deps is not None:
                await self.deps.check_existing(deps)
                await self.deps.submit(caller, item)
                return item
            seq = await self.enqueue(item, item.id)
            sub = Submission("pending", caller.guid, item.capability, item.taskId, seq=seq, boundary=item.boundary)
            await self.subs.write(item.id, sub, 0)  # (a repeat of the broadcast finds it written: same item)
        return item

    async def publish(self, item: WorkItem, msg_id: str) -> None:
        """Put ``item`` on its queue, or block it until its dependencies complete (a DLQ retry of a dependent)."""
        if item.dependsOn:
            await self.deps.block(item, msg_id)
        else:
            await self.enqueue(item, msg_id)

    async def enqueue(self, item: WorkItem, msg_id: str) -> int:
        """Put ``item`` on its queue (``Nats-Msg-Id`` ``msg_id`` drops a repeat) and arm its deadline timer."""
        await self._ensure_consumer(item.capability, item.priority, item.boundary)
        payload = dumps(item.model_dump(exclude_none=True, exclude={"leaseExpiresAt"}))
        subject = self.layout.work_subject(item.capability, item.priority, item.boundary)
        try:
            seq = await store(
                self._conn.jetstream,
                subject,
                payload,
                stream=self.layout.work_stream,
                msg_id=msg_id,
                timeout=API_TIMEOUT_S,
            )
        except PayloadTooLargeError:
            raise LimitExceeded("the work item is larger than the NATS server accepts") from None
        if item.deadline is not None:
            try:
                await arm_deadline(self._conn, self.layout, item, seq)
            except Exception:  # the item is queued; a claim after the deadline still dead-letters it
                log.warning("could not arm the deadline timer of work item %s", item.id, exc_info=True)
        return seq

    # -- claim -----------------------------------------------------------------------------------

    async def claim(
        self, caller: Caller, capability: str, *, max_items: int = 1, timeout_ms: int = 5000
    ) -> list[WorkItem]:
        """Take up to ``max_items`` items, highest priority first, waiting up to ``timeout_ms`` for the first; only
        unbounded items and those of boundaries the running call may take (:func:`capscope.boundary_visible`)."""
        cap = check_capability(capability)
        if not isinstance(max_items, int) or isinstance(max_items, bool) or not 1 <= max_items <= MAX_BATCH:
            raise InvalidArgument(f"max must be an integer from 1 to {MAX_BATCH}")
        if (
            not isinstance(timeout_ms, int)
            or isinstance(timeout_ms, bool)
            or not 0 <= timeout_ms <= MAX_CLAIM_TIMEOUT_MS
        ):
            raise InvalidArgument(f"timeout must be an integer from 0 to {MAX_CLAIM_TIMEOUT_MS} ms")
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_ms / 1000
        arrived = asyncio.Event()

        async def wake(_msg: Msg) -> None:
            arrived.set()

        with nats_errors():
            # The first look needs no subscription: most claims find an item there (a SUB, an UNSUB and a task saved).
            got, _ = await self._claim_pass(caller, cap, max_items, first=True)
            if got or not timeout_ms or loop.time() >= end:
                return got
            # Nothing yet: listen for new items, then look again at once (one may have come in between).
            sub = await self._conn.client.subscribe(self.layout.work_subject(cap), cb=wake)
            try:
                woken, fresh = False, True
                while True:
                    arrived.clear()
                    got, waiting = await self._claim_pass(caller, cap, max_items)
                    left = end - loop.time()
                    if got or left <= 0:
                        return got
                    # New items announce themselves; re-offers (expired leases, retry backoffs) do not: poll for those.
                    # A wake can come before the stream has stored the item it announces (the server delivers to
                    # this subscription and to the stream's intake apart): after one, look again soon too. And once
                    # right after subscribing: an item published before the subscription and stored after the look
                    # that followed it wakes nobody.
                    bound = left
                    if waiting or woken:
                        bound = min(left, POLL_S)
                    elif fresh:
                        bound = min(left, RECHECK_S)
                    woken = fresh = False
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(arrived.wait(), bound)
                        woken = True
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _claim_pass(
        self, caller: Caller, cap: str, max_items: int, *, first: bool = False
    ) -> tuple[list[WorkItem], bool]:
        """One look at every non-empty (priority, boundary) the caller may take, highest priority first; also says
        whether any such message is stored at all."""
        counts = {
            key: n
            for key, n in (await self.subject_counts(cap)).items()
            if capscope.boundary_visible(cap, key[1], take=True)
        }
        got: list[WorkItem] = []
        may_wait = first
        for priority, boundary in claim_order(counts):
            while len(got) < max_items:
                want = max_items - len(got)
                deliveries = await self._pull(cap, priority, boundary, want)
                if not deliveries and may_wait:  # see FIRST_PULL_WAIT_S; once per claim
                    deliveries = await self._pull(cap, priority, boundary, want, wait_s=FIRST_PULL_WAIT_S)
                may_wait = False
                for delivery in deliveries:
                    item = await self._take(caller, cap, delivery)
                    if item is not None:
                        got.append(item)
                if len(deliveries) < want:
                    break  # this priority has nothing more to hand out now
            if len(got) >= max_items:
                break
        return got, any(counts.values())

    async def subject_counts(self, cap: str) -> dict[tuple[int, str | None], int]:
        """Messages stored per (priority, boundary) of ``cap`` (handed-out ones included; every boundary)."""
        try:
            with nats_edge():
                info = await self._conn.jetstream.stream_info(
                    self.layout.work_stream, subjects_filter=self.layout.work_subject(cap)
                )
        except ResourceNotFound:
            await self.ensure()
            return {}
        counts: dict[tuple[int, str | None], int] = {}
        for subject, n in (info.state.subjects or {}).items():
            parsed = self.layout.parse_work_subject(subject)
            if parsed is not None and n > 0:
                counts[(parsed[1], parsed[2])] = n
        return counts

    async def _pull(
        self, cap: str, priority: int, boundary: str | None, batch: int, *, wait_s: float = 0.0
    ) -> list[Delivery]:
        consumer, nc = Layout.work_consumer(cap, priority, boundary), self._conn.client
        try:
            return await pull(nc, self.layout.work_stream, consumer, batch, wait_s=wait_s, prefix=self.api)
        except PullError:
            self._consumers.discard((cap, priority, boundary))
            await self._ensure_consumer(cap, priority, boundary)  # deleted, or queued by a process that made none
            return await pull(nc, self.layout.work_stream, consumer, batch, wait_s=wait_s, prefix=self.api)

    async def _take(self, caller: Caller, cap: str, delivery: Delivery) -> WorkItem | None:
        """Make a delivery the caller's claim, or settle it if it must not be handed out; None in that case."""
        item = WorkItem.parse(delivery.data)
        where = self.layout.parse_work_subject(delivery.subject)
        # An item's boundary is its subject's (what the consumer selected by): a message that says otherwise was not
        # written by us and is never handed out.
        if item is None or item.capability != cap or where is None or where[2] != item.boundary:
            log.warning("terminating unreadable work message %d on %s", delivery.stream_seq, delivery.subject)
            await self.ack(delivery.reply, "+TERM")
            return None
        held = await self.deps.admit(item, delivery.stream_seq) if item.dependsOn else None
        if held is not None:
            log.info("dropping work message %d of item %s: %s", delivery.stream_seq, item.id, held)
            await self.ack(delivery.reply, "+TERM")
            return None
        now = time.time()
        attempts = item.attempts + delivery.delivered
        # A first delivery of a fresh item has no record yet: try to create one without reading first (a
        # record that exists after all makes the create fail, and the next round reads it).
        fresh = delivery.delivered == 1 and item.attempts == 0
        msg_id = delivery.headers.get(MSG_ID)
        for _ in range(3):
            record, revision = (None, 0) if fresh else await self.records.read(item.id)
            fresh = False
            stale = stale_copy(record, delivery.stream_seq, msg_id)
            if stale is not None:  # e.g. a leftover pulled just before a DLQ retry removed it: never handed out
                log.info("dropping work message %d of item %s: %s", delivery.stream_seq, item.id, stale)
                await self.ack(delivery.reply, "+TERM")
                return None
            same = record is not None and record.seq == delivery.stream_seq
            if record is not None and same and record.cancelled:  # cancelled while claimed; the lease ran out
                if await self.settling.cancel_claimed(item.id, replace(record, reply=delivery.reply), revision):
                    return None
                continue
            if record is not None and same and record.state == "done":
                await self.ack(delivery.reply, "+ACK")  # completed through an older delivery
                return None
            if record is not None and same and record.state == "dead":
                await self.settle_dead(item, record, reply=delivery.reply)
                return None
            errors = list(record.errors) if record is not None and (same or item.attempts > 0) else []
            base = ItemRecord(state="claimed", seq=delivery.stream_seq, errors=errors, requeue=copy_token(msg_id))
            if record is not None and same and record.state == "claimed" and record.delivered < delivery.delivered:
                base = base.with_error(
                    f"{timestamp()} attempt {record.attempts}: lease expired (held by {record.claimer})"
                )
            if item.deadline is not None and parse_instant(item.deadline).timestamp() <= now:
                if await self.dead_letter(item, base, revision, "deadline_passed", attempts - 1, reply=delivery.reply):
                    return None
                continue
            if attempts > self._work.max_attempts:  # attempts carried over by a DLQ retry
                if await self.dead_letter(item, base, revision, "max_attempts", attempts - 1, reply=delivery.reply):
                    return None
                continue
            lease = now + self.lease_s
            claimed = replace(
                base,
                delivered=delivery.delivered,
                claimer=caller.guid,
                reply=delivery.reply,
                lease_expires=lease,
                attempts=attempts,
                deadline=item.deadline is not None,
            )
            written = await self.records.write(item.id, claimed, revision)
            if written is not None:
                self.settling.remember(item.id, claimed, written)
                return item.model_copy(update={"attempts": attempts, "leaseExpiresAt": iso_epoch(lease)})
        log.warning("gave up claiming work item %s after repeated conflicts; it is offered again later", item.id)
        return None

    # -- settle ----------------------------------------------------------------------------------

    async def progress(
        self, caller: Caller, item_id: str, *, progress: int | None = None, note: str | None = None
    ) -> str:
        return await self.settling.progress(caller, item_id, progress=progress, note=note)

    async def complete(self, caller: Caller, item_id: str, result: Any = None) -> None:
        await self.settling.complete(caller, item_id, result)

    async def fail(self, caller: Caller, item_id: str, reason: str, *, recoverable: bool = True) -> tuple[Outcome, int]:
        return await self.settling.fail(caller, item_id, reason, recoverable=recoverable)

    async def cancel(self, caller: Caller, item_id: str, *, admin: bool = False) -> CancelOutcome:
        return await cancel(self, caller, item_id, admin=admin)

    async def dead_letter(
        self,
        item: WorkItem,
        base: ItemRecord,
        revision: int,
        reason: DeadReason,
        attempts: int,
        *,
        reply: str | None = None,
    ) -> bool:
        """Decide (CAS) that the item is dead, then write its DLQ entry and remove it from the queue.

        False when the record moved meanwhile (the caller looks again). Each later step can be repeated: a
        crash after the decision is finished by whoever meets the item next (a claim or the events mover).
        """
        dead = replace(
            base,
            state="dead",
            reason=reason,
            attempts=max(attempts, 0),
            settled_at=timestamp(),
            claimer=None,
            reply=None,
        )
        if await self.records.write(item.id, dead, revision) is None:
            return False
        await self.settle_dead(item, dead, reply=reply)
        return True

    async def settle_dead(self, item: WorkItem, record: ItemRecord, *, reply: str | None = None) -> None:
        """The steps after the decision: the DLQ entry (written at most once), then the queue message goes."""
        reason = record.reason if record.reason in get_args(DeadReason) else "max_attempts"
        entry = DlqItem(
            id=item.id,
            workItem=item.model_copy(update={"attempts": record.attempts, "leaseExpiresAt": None}),
            reason=reason,  # type: ignore[arg-type]
            attempts=record.attempts,
            failedAt=record.settled_at or timestamp(),
            errors=list(record.errors),
            dependency=record.dependency,
        )
        await self.dlq.file(entry, record.seq)
        if reply is not None:
            await self.ack(reply, "+TERM")  # on a WorkQueue stream, the message goes with it
        elif record.seq:  # (0: a blocked item, never queued)
            await delete_msg(self._conn.client, self.layout.work_stream, record.seq, prefix=self.api)
        if item.deadline is not None:
            await disarm_deadline(self._conn, self.layout, item.id)
        try:
            await self.deps.on_settled(item.id)
        except Exception:  # the sweeper dead-letters its dependents
            log.warning("settling the dependents of dead work item %s failed", item.id, exc_info=True)

    async def ack(self, reply: str, kind: AckKind, *, delay_s: float | None = None) -> None:
        await ack(self._conn.client, reply, kind, delay_s=delay_s, timeout=API_TIMEOUT_S)

    async def load(self, seq: int) -> StoredMsg | None:
        """The work message stored at ``seq`` (None once it is gone)."""
        found = await get_next(
            self._conn.client,
            self.layout.work_stream,
            seq,
            self.layout.work_subjects,
            prefix=self.api,
            timeout=API_TIMEOUT_S,
        )
        return found if found is not None and found.seq == seq else None

    # -- DLQ -------------------------------------------------------------------------------------

    async def dlq_retry(self, item_id: str, reset_attempts: bool) -> WorkItem:
        with nats_errors():
            item = await self.dlq.retry(item_id, reset_attempts, self.publish)
            try:
                await self.deps.on_retried(item_id)
            except Exception:  # its dependents stay in the DLQ, where they can be retried by hand
                log.warning("retrying the dependents of work item %s failed", item_id, exc_info=True)
            return item

    async def dlq_recover(self) -> int:
        return await self.dlq.recover(self.publish)
