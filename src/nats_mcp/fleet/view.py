"""The fleet's read-only view: what `nats-mcp fleet status` and the dashboard's fleet panel show, read from the fleet
bucket without ever creating it (a namespace where no coordinator has run reads as no fleet, not as an error).

Plain JSON-ready data: targets with their instances counted live and starting against ``max``, pending work per
target (from queue counts the caller already has), the active coordinator and when its lease runs out, and the most
recent decisions, newest last.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import nats.js.errors

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import ResourceNotFound
from nats_mcp.bus.layout import Layout
from nats_mcp.fleet.decide import Queues, work_for
from nats_mcp.fleet.state import LEASE_NAME, FleetStore

RECENT_DECISIONS = 20


def pending_for(target: Mapping[str, Any], queues: Queues) -> int:
    """Queued items a target (its summary as stored) may take: over its capabilities and only the work boundaries it
    declares, as the coordinator's decisions count them."""
    return work_for(target.get("capabilities", []), target.get("boundaries", []), queues)[0]


async def read_fleet(
    conn: NatsConnection,
    layout: Layout,
    now: float,
    queues: Queues | None = None,
    *,
    recent: int = RECENT_DECISIONS,
) -> dict[str, Any] | None:
    """The fleet of ``layout``'s namespace as of ``now``, or None when no coordinator has run there (no bucket, or
    the empty one provisioning made). ``queues``: (pending, in flight) per (capability, boundary), each target's
    pending counted as the coordinator counts it (:func:`pending_for`)."""
    store = FleetStore(conn, layout, 3.0, create=False)
    try:
        kv = await store.bucket.kv()
    except ResourceNotFound:
        return None
    targets = await store.info("targets") or []
    leader = await store.info("leader")
    instances = await store.instances()
    decisions = await store.decisions()
    if not (targets or leader or instances or decisions):
        return None  # made empty by `nats-mcp provision`: no coordinator has run here either
    lease: dict[str, Any] | None = None
    try:
        entry = await kv.get(Layout.lock_key(LEASE_NAME))
        lease = json.loads(entry.value or b"null")
    except (nats.js.errors.KeyNotFoundError, ValueError):
        lease = None  # released (a clean stop) or never taken
    shown = []
    for t in targets:
        mine = [r for r in instances if r.target == t.get("name")]
        shown.append(
            {
                **t,
                "live": sum(1 for r in mine if r.state == "running"),
                "starting": sum(1 for r in mine if r.state == "starting"),
                "pending": pending_for(t, queues or {}),
                "instances": [
                    {
                        "id": r.id,
                        "agent": r.agent_name,
                        "guid": r.agent_guid,
                        "state": r.state,
                        "ageS": round(now - r.started_at, 1),
                    }
                    for r in mine
                ],
            }
        )
    return {
        "leader": _leader(leader, lease, now),
        "targets": shown,
        "decisions": [d.__dict__ for d in decisions[-recent:]] if recent else [],
    }


def _leader(info: Any, lease: Any, now: float) -> dict[str, Any] | None:
    """The coordinator that announced itself last, with its lease: ``active`` while the lease it holds is unexpired
    (a leader that died keeps its announcement until a successor's replaces it)."""
    if not isinstance(info, dict):
        return None
    expires: float | None = None
    if isinstance(lease, dict) and lease.get("owner") == info.get("id"):
        try:
            expires = float(lease["expiresAt"])
        except (KeyError, TypeError, ValueError):
            expires = None
    return {
        **info,
        "leaseExpiresInS": round(expires - now, 1) if expires is not None else None,
        "active": expires is not None and expires > now,
    }
