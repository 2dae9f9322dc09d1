"""The dead-letter tools: work items that ran out of attempts or time, listed, retried or discarded (warp_dlq_*)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nats_mcp.api.schema import CapabilityName, UuidStr
from nats_mcp.api.tools.base import Args, Out, Rendered, ToolSpec, more_hint
from nats_mcp.coord.context import Caller
from nats_mcp.coord.models import DlqItem
from nats_mcp.coord.service import Coordinator
from nats_mcp.security.needs import Admin, CapabilityRead

_DLQ_ITEM = "The dead-lettered item's id (from warp_dlq_list)."
_CURSOR = "nextCursor of the previous page, to continue (same filters)."


# ---- inputs -------------------------------------------------------------------------------------


class DlqListArgs(Args):
    capability: CapabilityName | None = Field(default=None, description="Only items of this capability.")
    limit: int = Field(default=20, ge=1, le=100, description="Items per page.")
    cursor: str | None = Field(default=None, description=_CURSOR)


class DlqRetryArgs(Args):
    itemId: UuidStr = Field(description=_DLQ_ITEM)
    resetAttempts: bool = Field(default=False, description="Start counting attempts from zero again.")


class DlqDiscardArgs(Args):
    itemId: UuidStr = Field(description=_DLQ_ITEM)


# ---- outputs ------------------------------------------------------------------------------------


class DlqListOut(Out):
    items: list[DlqItem]
    nextCursor: str | None
    hasMore: bool
    total: int | None


class DlqRetryOut(Out):
    itemId: str
    requeued: Literal[True]


class DlqDiscardOut(Out):
    itemId: str
    discarded: Literal[True]


# ---- handlers -----------------------------------------------------------------------------------


async def dlq_list(c: Coordinator, _caller: Caller, a: DlqListArgs) -> Rendered:
    page = await c.work.dlq.page(a.capability, a.limit, a.cursor)
    out = DlqListOut(items=page.items, nextCursor=page.next_cursor, hasMore=page.has_more, total=page.total)
    if not page.items:
        return out, "The dead-letter queue is empty" + (f" for {a.capability}." if a.capability else ".")
    blocks = []
    for e in page.items:
        errors = "\n".join(f"  - {err}" for err in e.errors[-5:])
        blocks.append(
            f"- **{e.workItem.taskId}** `{e.id}` ({e.workItem.capability}"
            + (f", boundary {e.workItem.boundary}" if e.workItem.boundary else "")
            + f"): {e.reason} after "
            f"{e.attempts} attempt(s), {e.failedAt}" + (f"\n{errors}" if errors else "")
        )
    total = f" of {page.total}" if page.total is not None else ""
    return out, f"{len(page.items)}{total} dead-lettered item(s):\n" + "\n".join(blocks) + more_hint(page.next_cursor)


async def dlq_retry(c: Coordinator, _caller: Caller, a: DlqRetryArgs) -> Rendered:
    item = await c.work.dlq_retry(a.itemId, a.resetAttempts)
    how = "with attempts reset" if a.resetAttempts else f"with {item.attempts} attempt(s) counted so far"
    return DlqRetryOut(
        itemId=a.itemId, requeued=True
    ), f"Work item `{a.itemId}` is back in the **{item.capability}** queue, {how}."


async def dlq_discard(c: Coordinator, _caller: Caller, a: DlqDiscardArgs) -> Rendered:
    await c.work.dlq.discard(a.itemId)
    return DlqDiscardOut(itemId=a.itemId, discarded=True), f"Dead-lettered item `{a.itemId}` deleted for good."


DLQ_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "dlq_list",
        "List dead letters",
        "Dead-lettered work items with their reason and error history, oldest first.",
        DlqListArgs,
        DlqListOut,
        dlq_list,
        read_only=True,
        idempotent=True,
        needs=(CapabilityRead("capability"),),
    ),
    ToolSpec(
        "dlq_retry",
        "Retry dead letter",
        "Put a dead-lettered item back on its queue (atomically: never in both places, never lost).",
        DlqRetryArgs,
        DlqRetryOut,
        dlq_retry,
        needs=(Admin("dlq"),),
    ),
    ToolSpec(
        "dlq_discard",
        "Discard dead letter",
        "Delete a dead-lettered item for good.",
        DlqDiscardArgs,
        DlqDiscardOut,
        dlq_discard,
        destructive=True,
        needs=(Admin("dlq"),),
    ),
)
