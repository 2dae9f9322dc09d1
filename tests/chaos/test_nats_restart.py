"""NATS restarted under mixed load: two `nats-mcp serve` agents on one nats-server keep posting, messaging and
handing out work while the server is SIGKILLed and started again on the same port and store. Nothing an agent was
told was stored is lost; the tools answer ``nats_unavailable`` meanwhile (nothing else); the recovery time — from
the restart to the first acknowledged call — is measured and printed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.chaos.traffic import Tally, drain, round_trip
from tests.support.natsserver import NatsServer
from tests.support.stdio import agent
from tests.support.work_tools import register

pytestmark = pytest.mark.chaos

NS = "team-restart"
ROUNDS = 10
DOWN_ROUNDS = 3
RECOVERY_BOUND_S = 30.0


async def test_a_restarted_nats_loses_nothing_acknowledged(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {"NATS_MCP_NATS_RECONNECT_BACKOFF_MIN_S": "0.05", "NATS_MCP_NATS_RECONNECT_BACKOFF_MAX_S": "0.5"}
    tally = Tally()
    acked: dict[str, set[str]] = {"channel": set(), "dm": set(), "work": set()}
    async with agent(tmp_path, nats_server, "a", NS, **env) as a, agent(tmp_path, nats_server, "b", NS, **env) as b:
        await register(a, "python")
        b_guid = await register(b)
        n = 0
        for _ in range(ROUNDS):
            await round_trip(tally, a, b, b_guid, n := n + 1, acked)

        nats_server.kill()  # SIGKILL: no graceful shutdown, the store is recovered on start
        before = {k: len(v) for k, v in acked.items()}
        for _ in range(DOWN_ROUNDS):  # the tools answer a transient error, nothing else (Tally checks)
            await round_trip(tally, a, b, b_guid, n := n + 1, acked)
        assert {k: len(v) for k, v in acked.items()} == before, "acknowledged while NATS was down?"
        assert tally.transient, "no tool noticed that NATS was down"

        await asyncio.to_thread(nats_server.start)
        restarted = time.monotonic()
        # Recovered once one whole round (channel, DM, work) is acknowledged: the paths come back one by one (the
        # work stream's consumer after the channel's, slower with other tests beside this one).
        recovered = None
        while recovered is None and time.monotonic() - restarted < RECOVERY_BOUND_S:
            counts = {k: len(v) for k, v in acked.items()}
            await round_trip(tally, a, b, b_guid, n := n + 1, acked)
            if all(len(v) > counts[k] for k, v in acked.items()):
                recovered = time.monotonic() - restarted
        assert recovered is not None, f"no whole round acknowledged within {RECOVERY_BOUND_S} s of the restart"
        print(f"recovered {recovered:.2f} s after the restart; transient errors meanwhile: {len(tally.transient)}")

        after = {k: len(v) for k, v in acked.items()}
        for _ in range(ROUNDS):
            await round_trip(tally, a, b, b_guid, n := n + 1, acked)
        # once recovered, every round is acknowledged again
        assert {k: len(v) - after[k] for k, v in acked.items()} == dict.fromkeys(acked, ROUNDS), tally.transient
        await drain(tally, a, b, acked, time.monotonic() + 90)
