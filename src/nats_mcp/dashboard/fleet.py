"""The dashboard's fleet boundary: the fleet coordinator's targets, leader and recent decisions, for the page.

Read through :func:`nats_mcp.fleet.view.read_fleet`, which never creates the fleet bucket: a namespace where no
coordinator has run shows an empty panel (``None``), not an error.
"""

from __future__ import annotations

from typing import Any

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.fleet.view import read_fleet

DECISIONS_SHOWN = 10
REASON_CHARS = 200
"""A decision's reason is the coordinator's own text, but it may quote a mechanism's error: kept short."""


async def fleet_panel(conn: NatsConnection, layout: Layout, now: float) -> dict[str, Any] | None:
    """The fleet of the namespace (targets, leader, the last decisions newest first), or None when there is none."""
    fleet = await read_fleet(conn, layout, now, recent=DECISIONS_SHOWN)
    if fleet is None:
        return None
    for target in fleet["targets"]:
        target.pop("instances", None)  # the counts are the panel; `nats-mcp fleet status` lists them
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


def with_pending(fleet: dict[str, Any] | None, queues: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Each target's pending items from the queue counts of the same snapshot (read once for both panels)."""
    if fleet is not None:
        waiting = {q["capability"]: q["pending"] for q in queues}
        for target in fleet["targets"]:
            target["pending"] = sum(waiting.get(c, 0) for c in target.get("capabilities", []))
    return fleet
