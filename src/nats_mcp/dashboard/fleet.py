"""The dashboard's fleet boundary: the fleet coordinator's targets, leader and recent decisions, for the page.

Read through :func:`nats_mcp.fleet.view.read_fleet`, which never creates the fleet bucket: a namespace where no
coordinator has run shows an empty panel (``None``), not an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.fleet.decide import Queues
from nats_mcp.fleet.view import pending_for, read_fleet

DECISIONS_SHOWN = 10
REASON_CHARS = 200
"""A decision's reason is the coordinator's own text, but it may quote a mechanism's error: kept short."""


async def fleet_panel(
    conn: NatsConnection, layout: Layout, now: float, queues: Callable[[], Awaitable[Queues]]
) -> dict[str, Any] | None:
    """The fleet of the namespace (targets with the pending work each may take, leader, the last decisions newest
    first), or None when there is none; ``queues`` is read only when there is a fleet."""
    fleet = await read_fleet(conn, layout, now, recent=DECISIONS_SHOWN)
    if fleet is None:
        return None
    counts = await queues()
    for target in fleet["targets"]:
        target.pop("instances", None)  # the counts are the panel; `nats-mcp fleet status` lists them
        target["pending"] = pending_for(target, counts)
    fleet["decisions"] = [
        {
            "at": d["at"],
            "target": d["target"],
            "action": d["action"],
            "reason": str(d["reason"])[:REASON_CHARS],
            "instance": d["instance"],
            "ok": d["ok"],
        }
        for d in reversed(fleet["decisions"])
    ]
    return fleet
