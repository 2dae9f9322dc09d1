"""The work item boundary: a new item built from what a broadcaster gives, every argument checked first."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from nats_mcp.config.coordination import LimitsSettings
from nats_mcp.coord.checks import check_metadata, iso, parse_instant, timestamp
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import InvalidArgument, LimitExceeded
from nats_mcp.coord.models import Scope, WorkItem
from nats_mcp.coord.work.dlq import check_boundary, check_capability
from nats_mcp.core import reqctx

MAX_TASK_ID = 256


def new_item(
    caller: Caller,
    limits: LimitsSettings,
    *,
    task_id: str,
    description: str,
    capability: str,
    priority: int,
    deadline: str | None,
    context_data: dict[str, Any] | None,
    scope: Scope | None,
    boundary: str | None = None,
) -> WorkItem:
    """A new queued item offered by ``caller``; raises the domain error of the first bad argument."""
    cap = check_capability(capability)
    bound = check_boundary(boundary) if boundary is not None else None
    if not isinstance(task_id, str) or not task_id.strip() or len(task_id) > MAX_TASK_ID:
        raise InvalidArgument(f"taskId must be a non-empty string of at most {MAX_TASK_ID} characters")
    if not isinstance(description, str) or not description.strip():
        raise InvalidArgument("description must be a non-empty string")
    size = len(description.encode("utf-8", "surrogatepass"))
    if size > limits.description_bytes:
        raise LimitExceeded(
            f"description is {size} bytes; the limit is {limits.description_bytes} bytes "
            "(limits.description_bytes): put the details in contextData or behind a link"
        )
    if not isinstance(priority, int) or isinstance(priority, bool) or not 1 <= priority <= 10:
        raise InvalidArgument("priority must be an integer from 1 (lowest) to 10 (highest)")
    due: datetime | None = None
    if deadline is not None:
        due = parse_instant(deadline)
        if due.timestamp() <= time.time():
            raise InvalidArgument(f"deadline {deadline} has already passed")
    context = check_metadata(context_data, limits.metadata_bytes, limits.metadata_depth)
    item = WorkItem(
        id=reqctx.new_uuid(),
        taskId=task_id,
        capability=cap,
        boundary=bound,
        description=description,
        priority=priority,
        offeredBy=caller.guid,
        offeredAt=timestamp(),
        attempts=0,
        deadline=iso(due) if due else None,
        contextData=context,
        scope=scope,
    )
    return item
