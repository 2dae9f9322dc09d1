"""The work deadline boundary: an item's deadline timer, a scheduled message the server publishes into the events
stream at the deadline (kept until handled, whether or not any server process runs then), armed and disarmed.
"""

from __future__ import annotations

import contextlib
import json
import math
from datetime import UTC, datetime

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.publish import store
from nats_mcp.coord.checks import parse_instant
from nats_mcp.coord.models import WorkItem

API_TIMEOUT_S = 5.0


async def arm_deadline(conn: NatsConnection, layout: Layout, item: WorkItem, seq: int) -> None:
    """A scheduled message that the server itself publishes at the deadline, into the events stream: it fires
    (and is kept until handled) whether or not any server process is running then."""
    assert item.deadline is not None
    at = datetime.fromtimestamp(math.ceil(parse_instant(item.deadline).timestamp()), UTC)
    await store(
        conn.jetstream,
        layout.deadline_timer_subject(item.id),
        json.dumps({"id": item.id, "seq": seq}).encode(),
        stream=layout.events_stream,
        headers={
            "Nats-Schedule": f"@at {at.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            "Nats-Schedule-Target": layout.deadline_due_subject(item.id),
        },
        timeout=API_TIMEOUT_S,
    )


async def disarm_deadline(conn: NatsConnection, layout: Layout, item_id: str) -> None:
    """Remove the deadline timer of a settled item."""
    with contextlib.suppress(Exception):  # a timer that fires later finds the item settled and is dropped
        await conn.jetstream.purge_stream(layout.events_stream, subject=layout.deadline_timer_subject(item_id))
