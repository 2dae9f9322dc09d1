"""A fleet state as an active coordinator leaves it in KV, written by the real fleet state module (fleet/state.py)."""

from __future__ import annotations

import os
import socket
import time

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.fleet.state import DecisionRecord, FleetStore, InstanceRecord

LONG_REASON = "x" * 400


async def write_fleet_state(conn: NatsConnection, namespace: str) -> FleetStore:
    """Targets ``py`` (python, max 2: one instance running, one starting) and ``docs`` (none), a leader holding its
    lease, and two decisions (a start, then a failed start with a long reason)."""
    store = FleetStore(conn, Layout(namespace), 30.0)
    assert await store.lease.acquire()
    leader = store.lease.owner
    await store.put_info("leader", {"id": leader, "host": socket.gethostname(), "pid": os.getpid(), "since": 1.0})
    await store.put_info(
        "targets",
        [
            {"name": "py", "capabilities": ["python"], "min": 0, "max": 2, "mechanism": "local"},
            {
                "name": "docs",
                "capabilities": ["docs", "python"],
                "min": 0,
                "max": 1,
                "mechanism": "local",
                "boundaries": ["corporate"],
            },
        ],
    )
    now = time.time()
    running = InstanceRecord("py", "a1", "a" * 32, "py-a1", now - 5, state="running", leader=leader)
    await store.put_instance(running)
    await store.put_instance(InstanceRecord("py", "b2", "b" * 32, "py-b2", now, leader=leader))
    await store.add_decisions(
        [
            DecisionRecord(now - 5, "py", "start", "3 pending, 0 agents", "a1", True, leader),
            DecisionRecord(now, "docs", "start", LONG_REASON, "c3", False, leader),
        ]
    )
    return store
