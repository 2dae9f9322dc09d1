"""The work-lookup boundary: where one item stands for its submitter (``warp_work_get``), waiting for its end if asked.

The answer is read from the item's state record, its submission record and (for an item forgotten by both) its
DLQ entry. A wait subscribes to the KV subjects of those two records before the first read: every state change
of the item is a write of one of them (claim, complete, fail, dead-letter, cancel, release, DLQ retry), so the
wait wakes on the change itself and reads again, and no loop polls. Waiting calls are bounded per principal
by the guard (the ``claim_waits`` share, :class:`~nats_mcp.security.needs.Waits`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.jstypes import Msg
from nats_mcp.bus.layout import Layout
from nats_mcp.coord import capscope
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import InvalidArgument, NotFound, nats_errors
from nats_mcp.coord.work.dlq import DlqService, check_capability, check_item_id
from nats_mcp.coord.work.store import ItemRecord, ItemRecords
from nats_mcp.coord.work.submissions import Submission, Submissions, sub_key

WorkState = Literal["pending", "blocked", "claimed", "completed", "dead", "cancelled"]
TERMINAL: tuple[WorkState, ...] = ("completed", "dead", "cancelled")
MAX_WAIT_MS = 30_000

_OF_RECORD: dict[str, WorkState] = {
    "claimed": "claimed",
    "released": "pending",  # back in its queue after a recoverable fail or an expired lease
    "requeued": "pending",  # back in its queue by a DLQ retry
    "done": "completed",
    "dead": "dead",
    "discarded": "dead",  # dead-lettered, then discarded from the DLQ
    "cancelled": "cancelled",
}


class WorkStatus(BaseModel):
    """Where one work item stands (warp_work_get)."""

    model_config = ConfigDict(extra="forbid")

    workItemId: str
    status: WorkState
    capability: str | None = None
    boundary: str | None = None
    """The item's work boundary (None: unbounded)."""
    taskId: str | None = None
    offeredBy: str | None = None
    dependsOn: list[str] = Field(default_factory=list)
    attempts: int = 0
    claimer: str | None = None
    progress: int | None = None
    note: str | None = None
    result: Any = None
    """The completion result (status completed)."""
    reason: str | None = None
    """Why it was dead-lettered (status dead): unrecoverable, max_attempts, deadline_passed, dependency_failed."""
    dependency: str | None = None
    """With reason dependency_failed: the dependency that was dead-lettered or cancelled."""
    errors: list[str] = Field(default_factory=list)
    settledAt: str | None = None
    cancelRequested: bool = False
    """Claimed, and cancelled since: the claimer's next progress or complete answers cancelled."""


class Source(Protocol):
    conn: NatsConnection
    records: ItemRecords
    subs: Submissions
    dlq: DlqService


def status_of(item_id: str, record: ItemRecord | None, sub: Submission | None) -> WorkStatus | None:
    """The status the two records give (None: neither exists)."""
    if record is None and sub is None:
        return None
    state: WorkState
    if record is not None:
        state = _OF_RECORD[record.state]
        if state == "pending" and sub is not None and sub.state == "blocked":
            state = "blocked"  # a dependent retried from the DLQ waits for its dependencies again
    else:
        assert sub is not None
        state = {"pending": "pending", "blocked": "blocked", "dead": "dead", "cancelled": "cancelled"}[sub.state]  # type: ignore[assignment]
    return WorkStatus(
        workItemId=item_id,
        status=state,
        capability=sub.capability if sub is not None else None,
        boundary=sub.boundary if sub is not None else None,
        taskId=sub.task_id if sub is not None else None,
        offeredBy=sub.offered_by if sub is not None else None,
        dependsOn=list(sub.depends_on) if sub is not None else [],
        attempts=(record.attempts or record.delivered) if record is not None else 0,
        claimer=record.claimer if record is not None and state == "claimed" else None,
        progress=record.progress if record is not None else None,
        note=record.note if record is not None else None,
        result=record.result if record is not None else None,
        reason=record.reason if record is not None and state == "dead" else None,
        dependency=(record.dependency if record is not None else None) or (sub.dependency if sub else None),
        errors=list(record.errors) if record is not None else [],
        settledAt=record.settled_at if record is not None else None,
        cancelRequested=record is not None and record.cancelled and state == "claimed",
    )


class WorkLookup:
    """``warp_work_get`` over one namespace."""

    def __init__(self, work: Source) -> None:
        self._work = work

    async def look(self, item_id: str) -> WorkStatus | None:
        """The item's status as stored now (None: no such item, or forgotten)."""
        (record, _), (sub, _) = await asyncio.gather(self._work.records.read(item_id), self._work.subs.read(item_id))
        status = status_of(item_id, record, sub)
        if status is not None:
            return status
        found = await self._work.dlq.find(item_id)  # an item from before submissions were recorded
        if found is None:
            return None
        entry = found[1]
        return WorkStatus(
            workItemId=item_id,
            status="dead",
            capability=entry.workItem.capability,
            boundary=entry.workItem.boundary,
            taskId=entry.workItem.taskId,
            offeredBy=entry.workItem.offeredBy,
            dependsOn=list(entry.workItem.dependsOn or []),
            attempts=entry.attempts,
            reason=entry.reason,
            dependency=entry.dependency,
            errors=entry.errors,
            settledAt=entry.failedAt,
        )

    async def _visible(self, caller: Caller, item_id: str, capability: str | None) -> WorkStatus:
        status = await self.look(item_id)
        # The submitter sees its own items; anyone else needs a read grant for the item's capability. An item of a
        # boundary the caller's policy does not grant it is not there for it, whoever submitted it.
        mine = status is not None and status.offeredBy == caller.guid
        if (
            status is None
            or (capability is not None and status.capability != capability)
            or not (mine or (capscope.visible(status.capability) if status.capability else not capscope.narrowed()))
            or not capscope.boundary_visible(status.capability or "", status.boundary)
        ):
            raise NotFound(f"no work item {item_id} that you may see (its submitter, or a reader of its capability)")
        return status

    async def get(self, caller: Caller, item_id: str, *, wait_ms: int = 0, capability: str | None = None) -> WorkStatus:
        """The item's status; with ``wait_ms``, once it is completed, dead or cancelled, or the wait is over."""
        check_item_id(item_id, "workItemId")
        capability = check_capability(capability) if capability is not None else None
        if not isinstance(wait_ms, int) or isinstance(wait_ms, bool) or not 0 <= wait_ms <= MAX_WAIT_MS:
            raise InvalidArgument(f"waitMs must be an integer from 0 to {MAX_WAIT_MS}")
        with nats_errors():
            if wait_ms == 0:
                return await self._visible(caller, item_id, capability)
            loop = asyncio.get_running_loop()
            end = loop.time() + wait_ms / 1000
            changed = asyncio.Event()

            async def wake(_msg: Msg) -> None:
                changed.set()

            nc, subs = self._work.conn.client, self._work.subs
            watched = [subs.subject(Layout.item_key(item_id)), subs.subject(sub_key(item_id))]
            subscriptions = [await nc.subscribe(subject, cb=wake) for subject in watched]
            try:
                while True:
                    changed.clear()
                    status = await self._visible(caller, item_id, capability)
                    left = end - loop.time()
                    if status.status in TERMINAL or left <= 0:
                        return status
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), left)
            finally:
                for subscription in subscriptions:
                    with contextlib.suppress(Exception):
                        await subscription.unsubscribe()
