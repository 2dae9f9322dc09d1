"""The dashboard's blocked-work boundary: items waiting for their dependencies (``dependsOn``), for the page and top."""

from __future__ import annotations

import asyncio
from typing import Any

from nats_mcp.bus.errors import ResourceNotFound
from nats_mcp.coord.work.service import WorkService

MAX_SHOWN = 50
"""Blocked items shown (the count covers them all); each costs one read per refresh."""
DEPS_SHOWN = 5


async def blocked_work(work: WorkService, limit: int = MAX_SHOWN) -> dict[str, Any]:
    """How many items are blocked, and the first ``limit`` of them with what they wait for (none while the namespace
    has no work-state bucket yet: a fresh deployment shows an empty panel, not an error)."""
    try:
        names = await work.subs.blocked()
    except ResourceNotFound:
        return {"total": 0, "shown": []}
    subs = await asyncio.gather(*(work.subs.read(item_id) for item_id in names[:limit]))
    shown = [
        {
            "id": item_id,
            "taskId": sub.task_id[:80],
            "capability": sub.capability,
            "offeredBy": sub.offered_by,
            "dependsOn": sub.depends_on[:DEPS_SHOWN],
            "dependsOnCount": len(sub.depends_on),
        }
        for item_id, (sub, _) in zip(names, subs, strict=False)
        if sub is not None and sub.state == "blocked"
    ]
    return {"total": len(names), "shown": shown}
