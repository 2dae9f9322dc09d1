"""A soak: agents of mixed load through one HTTP gateway for a while — every call answers ok, no work item is lost,
and the server's memory stays under a robustness limit. CI runs the short form; the long form is
``NATS_MCP_SOAK_AGENTS=50 NATS_MCP_SOAK_SECONDS=600 pytest tests/soak``. Speed and memory over time (latency
percentiles of each half, memory growth, as ratios) are measured by ``bench/soak.py``, not asserted here: a latency
ratio asserted in a test failed a CI run on a loaded machine (issue 26)."""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.support.http_server import api_key, launch, mcp_client
from tests.support.natsserver import NatsServer, wait_for
from tests.support.soak import CAPABILITY, UNLIMITED, Tally, agent_loop, call_ok, drain, register, rss_kib

pytestmark = pytest.mark.soak

AGENTS = int(os.environ.get("NATS_MCP_SOAK_AGENTS", "10"))
SECONDS = float(os.environ.get("NATS_MCP_SOAK_SECONDS", "20"))
WARM_CALLS = 30
WARM_S = max(5.0, SECONDS / 10)
"""Memory is compared from the warm point: every agent has made WARM_CALLS calls (all six kinds five times) and
the first tenth of the run (at least 5 s) is over. The server has filled its caches and streams by then: with 50
agents it still grows until about 60 s (a 10-minute run compared from 10 s read +20 %, from 60 s +2.4 %)."""
GROWTH_LIMIT = 0.25
"""A robustness limit, not a target: the server's RSS may grow at most 25 % from the warm point to the end. Runs
measured +0.7 to +2.4 % (50 agents for 10 minutes: 114.5 -> 116.8 MiB); state kept per call (a session, a
subscription, a cache entry never freed) grows with the calls, and at a few KiB a call crosses this in the short
form already. bench/soak.py reports the growth itself (target there: 1.10x)."""


async def failure_of(runs: list[asyncio.Task[None]]) -> str | None:
    """Wait for the agents; the first one's error with its traceback, or None if every agent ended well."""
    for outcome in await asyncio.gather(*runs, return_exceptions=True):
        if isinstance(outcome, BaseException):
            return "an agent failed:\n" + "".join(traceback.format_exception(outcome))[-4000:]
    return None


# The long form runs for minutes: the suite's 120 s per test is for the short one.
@pytest.mark.timeout(120 + 2 * SECONDS)
async def test_soak_mixed_load_answers_every_call_loses_nothing_and_bounds_memory(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    key, _ = await api_key(tmp_path, nats_server.url, "soak", "agent")
    server = await launch(tmp_path, "soak", nats_server.url, NATS_MCP_NAMESPACE="team-soak", **UNLIMITED)
    tallies = [Tally() for _ in range(AGENTS)]
    try:
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(mcp_client(server.url, key, agent=f"soak-{i}")) for i in range(AGENTS)
            ]
            guids = await register(clients)
            start = time.monotonic()
            warm_at, ends = start + WARM_S, start + SECONDS
            runs = [
                asyncio.create_task(agent_loop(c, i, guids, ends, t))
                for i, (c, t) in enumerate(zip(clients, tallies, strict=True))
            ]
            await wait_for(
                lambda: (
                    (time.monotonic() >= warm_at and all(t.calls >= WARM_CALLS for t in tallies))
                    or any(r.done() for r in runs)
                ),
                SECONDS + 60,
                message="the agents did not warm up",
            )
            # An agent whose call failed fails the test, with its own error: raised inside the ten clients' contexts
            # it came out nested deeper than pytest prints.
            problem = None
            if any(r.done() for r in runs):
                problem = await failure_of(runs) or f"the run ended before every agent made {WARM_CALLS} calls"
            else:
                rss_warm = rss_kib(server.proc.pid)
                problem = await failure_of(runs)
            if problem is None:
                rss_end = rss_kib(server.proc.pid)
                # nothing lost: every item broadcast was completed (what a claim missed is drained now), none left
                drained = Tally()
                await drain(clients[0], drained)
                status = await call_ok(clients[0], "warp_work_queue_status", capability=CAPABILITY)
    finally:
        assert await server.stop() == 0, server.stderr()[-2000:]
    if problem is not None:
        pytest.fail(problem)

    calls = sum(t.calls for t in tallies)
    broadcast = sum(t.broadcast for t in tallies)
    completed = sum(t.completed for t in tallies) + drained.completed
    growth = (rss_end - rss_warm) / rss_warm
    print(
        f"\nsoak: {AGENTS} agents, {SECONDS:.0f} s, {calls} calls, all ok; {broadcast} items broadcast, "
        f"{completed} completed; server RSS {rss_warm / 1024:.1f} -> {rss_end / 1024:.1f} MiB ({growth:+.1%})"
    )
    assert all(t.calls >= WARM_CALLS for t in tallies)
    assert completed == broadcast, (completed, broadcast)
    [queue] = status["queues"]  # type: ignore[misc]
    assert (queue["pending"], queue["inFlight"], queue["deadLettered"]) == (0, 0, 0), queue
    assert growth < GROWTH_LIMIT, f"server memory grew {growth:.1%} under load (limit {GROWTH_LIMIT:.0%})"
