"""The work tools: capability queues an agent broadcasts to, claims from under a lease, and reports on (warp_work_*)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from nats_mcp.api.schema import CapabilityName, NameStr, UuidStr
from nats_mcp.api.tools.base import Args, Out, Rendered, ToolSpec, more_hint
from nats_mcp.coord.context import Caller
from nats_mcp.coord.models import QueueStatus, Scope, WorkItem
from nats_mcp.coord.service import Coordinator
from nats_mcp.coord.work.dlq import check_capability
from nats_mcp.security.needs import Admin, CapabilityRead, CapabilityUse, Waits

_CAP = "A capability, e.g. typescript or code-review (a-z, 0-9, '-', '_')."
_ITEM = "The work item's id (workItemId from the claim)."
_CURSOR = "nextCursor of the previous page, to continue (same filters)."


# ---- inputs -------------------------------------------------------------------------------------


class BroadcastArgs(Args):
    taskId: str = Field(description="Your own reference for the task (free text, at most 256 characters).")
    description: str = Field(description="What needs doing (at most 8 KiB by default).")
    requiredCapability: CapabilityName = Field(description=_CAP)
    priority: int = Field(default=5, ge=1, le=10, description="1 (lowest) to 10 (highest); higher is claimed first.")
    deadline: str | None = Field(
        default=None, description="ISO 8601 date-time; after it the item is dead-lettered instead of handed out."
    )
    contextData: dict[str, Any] | None = Field(default=None, description="Any JSON object (at most 16 KiB).")
    scope: Scope | None = Field(default=None, description="Stored with the item for information.")
    dependsOn: list[UuidStr] | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="Up to 50 existing item ids: blocked until all complete; dead-lettered if one fails.",
    )
    boundary: NameStr | None = Field(
        default=None,
        description="Only agents granted this boundary (e.g. corporate) see and claim the item; omitted: any agent.",
    )


class ClaimArgs(Args):
    capability: CapabilityName = Field(description=_CAP + " You must have registered it.")
    timeout: int = Field(default=5000, ge=0, le=30000, description="How long to wait for work, in ms (0: do not wait).")


class ClaimBatchArgs(ClaimArgs):
    max: int = Field(default=10, ge=1, le=50, description="At most this many items.")


class ProgressArgs(Args):
    workItemId: UuidStr = Field(description=_ITEM)
    progress: int | None = Field(default=None, ge=0, le=100, description="Percent done.")
    note: str | None = Field(default=None, max_length=2048, description="A short status note.")


class CompleteArgs(Args):
    workItemId: UuidStr = Field(description=_ITEM)
    result: Any = Field(default=None, description="Any JSON value describing the outcome (at most 16 KiB).")


class FailArgs(Args):
    workItemId: UuidStr = Field(description=_ITEM)
    reason: str = Field(description="What went wrong (kept in the item's error history).", max_length=2048)
    recoverable: bool = Field(
        default=True, description="true: offer it again after a backoff; false: dead-letter it now."
    )


class WorkListArgs(Args):
    capability: CapabilityName = Field(description=_CAP)
    minPriority: int | None = Field(default=None, ge=1, le=10, description="Only items of at least this priority.")
    maxPriority: int | None = Field(default=None, ge=1, le=10, description="Only items of at most this priority.")
    deadlineBefore: str | None = Field(default=None, description="Only items with a deadline before this (ISO 8601).")
    deadlineAfter: str | None = Field(default=None, description="Only items with a deadline after this (ISO 8601).")
    limit: int = Field(default=20, ge=1, le=100, description="Items per page.")
    cursor: str | None = Field(default=None, description=_CURSOR)


class WorkGetArgs(Args):
    workItemId: UuidStr = Field(description="The work item's id (workItemId from warp_work_broadcast).")
    waitMs: int = Field(
        default=0,
        ge=0,
        le=30000,
        description="Wait up to this many ms for it to complete, die or be cancelled.",
    )
    capability: CapabilityName | None = Field(default=None, description="The item's capability, if known.")


class WorkCancelArgs(Args):
    workItemId: UuidStr = Field(description="The work item's id (workItemId from warp_work_broadcast).")


class QueueStatusArgs(Args):
    capability: CapabilityName | None = Field(default=None, description="One capability; all when omitted.")


# ---- outputs ------------------------------------------------------------------------------------


class BroadcastOut(Out):
    workItemId: str
    taskId: str
    capability: str
    boundary: str | None
    priority: int
    deadline: str | None
    status: Literal["pending", "blocked"]


class ClaimOut(Out):
    workItem: WorkItem | None


class ClaimBatchOut(Out):
    workItems: list[WorkItem]


class ProgressOut(Out):
    workItemId: str
    leaseExpiresAt: str


class CompleteOut(Out):
    workItemId: str
    status: Literal["completed"]


class FailOut(Out):
    workItemId: str
    status: Literal["retrying", "dead_lettered"]
    attempts: int


class WorkListOut(Out):
    items: list[WorkItem]
    nextCursor: str | None
    hasMore: bool
    total: int | None


class WorkGetOut(Out):
    workItemId: str
    status: Literal["pending", "blocked", "claimed", "completed", "dead", "cancelled"]
    capability: str | None
    boundary: str | None
    taskId: str | None
    offeredBy: str | None
    dependsOn: list[str]
    attempts: int
    claimer: str | None
    progress: int | None
    note: str | None
    result: Any = None
    reason: str | None
    dependency: str | None
    errors: list[str]
    settledAt: str | None
    cancelRequested: bool


class WorkCancelOut(Out):
    workItemId: str
    status: Literal["cancelled", "cancel_requested"]


class QueueStatusOut(Out):
    queues: list[QueueStatus]


# ---- rendering ----------------------------------------------------------------------------------


def _item_text(item: WorkItem) -> str:
    lines = [
        f"**{item.taskId}** · `{item.id}` · priority {item.priority} · attempt {item.attempts}"
        + (f" · boundary {item.boundary}" if item.boundary else ""),
        f"Offered by `{item.offeredBy}` at {item.offeredAt}"
        + (f" · deadline {item.deadline}" if item.deadline else ""),
    ]
    if item.leaseExpiresAt:
        lines.append(f"Lease until {item.leaseExpiresAt} (renew with warp_work_progress)")
    lines.append("")
    lines.append(item.description)
    if item.contextData:
        lines.append(f"\n```json\n{json.dumps(item.contextData, indent=2, ensure_ascii=False)}\n```")
    return "\n".join(lines)


# ---- handlers -----------------------------------------------------------------------------------


async def work_broadcast(c: Coordinator, caller: Caller, a: BroadcastArgs) -> Rendered:
    await c.require_registered_handle(caller)
    item = await c.work.broadcast(
        caller,
        task_id=a.taskId,
        description=a.description,
        capability=a.requiredCapability,
        priority=a.priority,
        deadline=a.deadline,
        context_data=a.contextData,
        scope=a.scope,
        depends_on=a.dependsOn,
        boundary=a.boundary,
    )
    out = BroadcastOut(
        workItemId=item.id,
        taskId=item.taskId,
        capability=item.capability,
        boundary=item.boundary,
        priority=item.priority,
        deadline=item.deadline,
        status="blocked" if item.dependsOn else "pending",
    )
    due = f", deadline {item.deadline}" if item.deadline else ""
    waits = f", blocked until {len(item.dependsOn)} item(s) complete" if item.dependsOn else ""
    bound = f" in boundary **{item.boundary}**" if item.boundary else ""
    return (
        out,
        f"Work item `{item.id}` ({item.taskId}) queued for **{item.capability}**{bound} at priority {item.priority}"
        f"{due}{waits}. Follow it with warp_work_get.",
    )


async def _claim(c: Coordinator, caller: Caller, capability: str, max_items: int, timeout: int) -> list[WorkItem]:
    cap = check_capability(capability)
    await c.require_capability(caller, cap)
    return await c.work.claim(caller, cap, max_items=max_items, timeout_ms=timeout)


async def work_claim(c: Coordinator, caller: Caller, a: ClaimArgs) -> Rendered:
    items = await _claim(c, caller, a.capability, 1, a.timeout)
    if not items:
        return ClaimOut(workItem=None), f'No work available for "{a.capability}" right now.'
    item = items[0]
    return ClaimOut(workItem=item), (
        "Claimed. It is yours until the lease runs out: finish with warp_work_complete, give it back with "
        f"warp_work_fail.\n\n{_item_text(item)}"
    )


async def work_claim_batch(c: Coordinator, caller: Caller, a: ClaimBatchArgs) -> Rendered:
    items = await _claim(c, caller, a.capability, a.max, a.timeout)
    if not items:
        return ClaimBatchOut(workItems=[]), f'No work available for "{a.capability}" right now.'
    blocks = "\n\n---\n".join(_item_text(i) for i in items)
    return ClaimBatchOut(workItems=items), f"Claimed {len(items)} item(s):\n\n{blocks}"


async def work_progress(c: Coordinator, caller: Caller, a: ProgressArgs) -> Rendered:
    expires = await c.work.progress(caller, a.workItemId, progress=a.progress, note=a.note)
    done = f" ({a.progress} %)" if a.progress is not None else ""
    return ProgressOut(workItemId=a.workItemId, leaseExpiresAt=expires), f"Lease renewed until {expires}{done}."


async def work_complete(c: Coordinator, caller: Caller, a: CompleteArgs) -> Rendered:
    await c.work.complete(caller, a.workItemId, a.result)
    return CompleteOut(workItemId=a.workItemId, status="completed"), f"Work item `{a.workItemId}` completed."


async def work_fail(c: Coordinator, caller: Caller, a: FailArgs) -> Rendered:
    status, attempts = await c.work.fail(caller, a.workItemId, a.reason, recoverable=a.recoverable)
    out = FailOut(workItemId=a.workItemId, status=status, attempts=attempts)
    if status == "retrying":
        return (
            out,
            f"Work item `{a.workItemId}` released after attempt {attempts}; it is offered again after a backoff.",
        )
    return out, f"Work item `{a.workItemId}` moved to the dead-letter queue after {attempts} attempt(s)."


async def work_list(c: Coordinator, _caller: Caller, a: WorkListArgs) -> Rendered:
    page = await c.work.views.list_items(
        a.capability,
        min_priority=a.minPriority,
        max_priority=a.maxPriority,
        deadline_before=a.deadlineBefore,
        deadline_after=a.deadlineAfter,
        limit=a.limit,
        cursor=a.cursor,
    )
    out = WorkListOut(items=page.items, nextCursor=page.next_cursor, hasMore=page.has_more, total=page.total)
    if not page.items:
        return out, f'No queued work for "{a.capability}" matches.'
    total = f" of {page.total}" if page.total is not None else ""
    lines = [
        f"- p{i.priority} **{i.taskId}** `{i.id}` attempts {i.attempts}"
        + (f", boundary {i.boundary}" if i.boundary else "")
        + (f", deadline {i.deadline}" if i.deadline else "")
        + (", claimed" if i.leaseExpiresAt else "")
        for i in page.items
    ]
    head = f"{len(page.items)}{total} queued item(s) for **{a.capability}**, in claim order:\n"
    return out, head + "\n".join(lines) + more_hint(page.next_cursor)


async def work_get(c: Coordinator, caller: Caller, a: WorkGetArgs) -> Rendered:
    got = await c.work.lookup.get(caller, a.workItemId, wait_ms=a.waitMs, capability=a.capability)
    out = WorkGetOut(**got.model_dump())
    head = f"Work item `{got.workItemId}`" + (f" (boundary {got.boundary})" if got.boundary else "")
    if got.status == "completed":
        result = json.dumps(got.result, indent=2, ensure_ascii=False) if got.result is not None else "null"
        return out, f"{head} completed at {got.settledAt}.\n\n```json\n{result}\n```"
    if got.status == "dead":
        why = f" (dependency `{got.dependency}` failed)" if got.dependency else ""
        return out, f"{head} is dead-lettered: {got.reason}{why}, after {got.attempts} attempt(s); see warp_dlq_list."
    if got.status == "claimed":
        done = f", {got.progress} %" if got.progress is not None else ""
        ask = " (cancel requested)" if got.cancelRequested else ""
        return out, f"{head} is claimed by `{got.claimer}` (attempt {got.attempts}{done}){ask}."
    if got.status == "blocked":
        return out, f"{head} is blocked until its dependencies complete: {', '.join(got.dependsOn)}."
    return out, f"{head} is {got.status}" + (f" after {got.attempts} attempt(s)." if got.attempts else ".")


async def work_cancel(c: Coordinator, caller: Caller, a: WorkCancelArgs) -> Rendered:
    return _cancelled(a.workItemId, await c.work.cancel(caller, a.workItemId))


async def work_force_cancel(c: Coordinator, caller: Caller, a: WorkCancelArgs) -> Rendered:
    """The admin's cancel (the guard admitted ``admin: [dlq]``): any submitter's item, otherwise as work_cancel."""
    return _cancelled(a.workItemId, await c.work.cancel(caller, a.workItemId, admin=True))


def _cancelled(item_id: str, status: Literal["cancelled", "cancel_requested"]) -> Rendered:
    out = WorkCancelOut(workItemId=item_id, status=status)
    if status == "cancel_requested":
        return out, f"Work item `{item_id}` is claimed: its claimer is told it was cancelled on its next call."
    return out, f"Work item `{item_id}` cancelled."


async def work_queue_status(c: Coordinator, _caller: Caller, a: QueueStatusArgs) -> Rendered:
    queues = await c.work.views.status(a.capability)
    if not queues:
        return QueueStatusOut(queues=[]), "No work queues yet."
    lines = ["| capability | pending | in flight | dead-lettered | oldest (s) |", "|---|---|---|---|---|"]
    lines += [
        f"| {q.capability} | {q.pending} | {q.inFlight} | {q.deadLettered} | "
        f"{q.oldestPendingSeconds if q.oldestPendingSeconds is not None else '-'} |"
        for q in queues
    ]
    return QueueStatusOut(queues=queues), "\n".join(lines)


WORK_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "work_broadcast",
        "Broadcast work",
        "Offer a task to every agent with a capability (needs "
        "registration). Higher priority is claimed first; an optional deadline dead-letters it if nobody gets "
        "to it in time.",
        BroadcastArgs,
        BroadcastOut,
        work_broadcast,
        needs=(CapabilityUse("requiredCapability", "broadcast", boundary="boundary"),),
    ),
    ToolSpec(
        "work_claim",
        "Claim work item",
        "Take the next work item for one of your registered capabilities "
        "(highest priority, then oldest). It is yours for a lease: renew with warp_work_progress, then "
        "warp_work_complete or warp_work_fail. Waits up to timeout ms for work.",
        ClaimArgs,
        ClaimOut,
        work_claim,
        needs=(CapabilityUse("capability", "claim"), Waits("timeout", 5000)),
    ),
    ToolSpec(
        "work_claim_batch",
        "Claim work items",
        "Like warp_work_claim, for up to max items at once.",
        ClaimBatchArgs,
        ClaimBatchOut,
        work_claim_batch,
        needs=(CapabilityUse("capability", "claim"), Waits("timeout", 5000)),
    ),
    ToolSpec(
        "work_progress",
        "Report work progress",
        "Renew your lease on a claimed item (and note progress), so it is not offered again.",
        ProgressArgs,
        ProgressOut,
        work_progress,
        idempotent=True,
    ),
    ToolSpec(
        "work_complete",
        "Complete work item",
        "Mark your claimed item done (exactly once: a second complete is a conflict).",
        CompleteArgs,
        CompleteOut,
        work_complete,
    ),
    ToolSpec(
        "work_fail",
        "Fail work item",
        "Report that your claimed item failed: recoverable (default) offers it "
        "again after a backoff; otherwise, or on its last attempt, it goes to the dead-letter queue.",
        FailArgs,
        FailOut,
        work_fail,
    ),
    ToolSpec(
        "work_list",
        "List queued work",
        "Preview a capability's queued items in claim order, without "
        "claiming any. Filters by priority and deadline; pages with nextCursor.",
        WorkListArgs,
        WorkListOut,
        work_list,
        read_only=True,
        idempotent=True,
        needs=(CapabilityRead("capability"),),
    ),
    ToolSpec(
        "work_get",
        "Get work item",
        "Status of a work item you submitted (result, attempts, claimer, errors); waitMs waits for it to end.",
        WorkGetArgs,
        WorkGetOut,
        work_get,
        read_only=True,
        idempotent=True,
        needs=(CapabilityRead("capability"), Waits("waitMs", 0, pool="read_waits")),
    ),
    ToolSpec(
        "work_cancel",
        "Cancel work item",
        "Cancel a work item you submitted: removed if not claimed, else its claimer's next call answers cancelled.",
        WorkCancelArgs,
        WorkCancelOut,
        work_cancel,
        destructive=True,
        idempotent=True,
    ),
    ToolSpec(
        "work_force_cancel",
        "Force-cancel work item",
        "Admin: cancel anyone's work item, as work_cancel does for its submitter (audited).",
        WorkCancelArgs,
        WorkCancelOut,
        work_force_cancel,
        destructive=True,
        idempotent=True,
        needs=(Admin("dlq"),),
    ),
    ToolSpec(
        "work_queue_status",
        "Work queue status",
        "Pending, in-flight and dead-lettered counts and the oldest item's age, per capability.",
        QueueStatusArgs,
        QueueStatusOut,
        work_queue_status,
        read_only=True,
        idempotent=True,
        needs=(CapabilityRead("capability"),),
    ),
)
