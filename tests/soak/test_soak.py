"""A soak: agents of mixed load through one HTTP gateway for a while — every call answers ok, the server's memory
does not grow past 10 %, and latency percentiles stay where they were. CI runs the short form; the long form is
``NATS_MCP_SOAK_AGENTS=50 NATS_MCP_SOAK_SECONDS=600 pytest tests/soak -s`` (figures printed)."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from contextlib import AsyncExitStack
from pathlib import Path

from mcp import Client

from tests.e2e.test_http_gateway import api_key, launch, mcp_client
from tests.support.natsserver import NatsServer

AGENTS = int(os.environ.get("NATS_MCP_SOAK_AGENTS", "10"))
SECONDS = float(os.environ.get("NATS_MCP_SOAK_SECONDS", "20"))
WARMUP_S = min(10.0, SECONDS / 4)
UNLIMITED = {f"NATS_MCP_SECURITY_RATE_PER_{who}_{what}": value for who in ("PRINCIPAL", "ADDRESS")
             for what, value in (("RATE_PER_S", "1000000"), ("BURST", "10000000"))}  # fmt: skip


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def call_ok(client: Client, tool: str, **args: object) -> dict[str, object]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, (tool, result.structured_content)
    return result.structured_content or {}


async def agent_loop(client: Client, me: int, guids: list[str], ends: float, samples: list[tuple[float, float]]) -> int:
    """Mixed load until ``ends``: post, read, DM, offer/claim/complete work, discover; latencies into ``samples``."""
    rng = random.Random(me)
    calls = 0
    while time.monotonic() < ends:
        started = time.monotonic()
        step = calls % 6
        if step == 0:
            await call_ok(client, "warp_channels_send", channel="roadmap", message=f"agent {me} says {calls}")
        elif step == 1:
            await call_ok(client, "warp_channels_read", channel="roadmap", limit=20)
        elif step == 2:
            await call_ok(client, "warp_messages_send_direct", recipientGuid=rng.choice(guids), message="ping")
        elif step == 3:
            await call_ok(client, "warp_messages_read_direct", limit=20)
        elif step == 4:
            await call_ok(client, "warp_work_broadcast", taskId=f"{me}-{calls}", description="soak",
                          requiredCapability="soak")  # fmt: skip
            claimed = (await call_ok(client, "warp_work_claim", capability="soak"))["workItem"]
            if isinstance(claimed, dict):
                await call_ok(client, "warp_work_complete", workItemId=claimed["id"])
        else:
            await call_ok(client, "warp_registry_discover", limit=20)
        samples.append((started, time.monotonic() - started))
        calls += 1
    return calls


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else values[0]


async def test_soak_mixed_load_holds_memory_and_latency(tmp_path: Path, nats_server: NatsServer) -> None:
    key, _ = await api_key(tmp_path, nats_server.url, "soak", "agent")
    server = await launch(tmp_path, "soak", nats_server.url, NATS_MCP_NAMESPACE="team-soak", **UNLIMITED)
    try:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(mcp_client(server.url, key, agent=f"soak-{i}"))
                       for i in range(AGENTS)]  # fmt: skip
            guids = []
            for client in clients:
                await call_ok(client, "warp_handle_set", handle="soaker")
                registered = await call_ok(client, "warp_registry_register", agentType="soak", capabilities=["soak"])
                guids.append(str(registered["agent"]["guid"]))  # type: ignore[index]
            samples: list[tuple[float, float]] = []
            start = time.monotonic()
            ends = start + SECONDS
            runs = [asyncio.create_task(agent_loop(c, i, guids, ends, samples)) for i, c in enumerate(clients)]
            await asyncio.sleep(WARMUP_S)  # measuring, not synchronising: the load runs on its own meanwhile
            rss_after_warmup = rss_kib(server.proc.pid)
            calls = sum(await asyncio.gather(*runs))
            rss_end = rss_kib(server.proc.pid)
    finally:
        assert await server.stop() == 0, server.stderr()[-2000:]

    measured = [(t, d) for t, d in samples if t >= start + WARMUP_S]
    middle = start + WARMUP_S + (SECONDS - WARMUP_S) / 2
    first = [d for t, d in measured if t < middle]
    second = [d for t, d in measured if t >= middle]
    p50 = (percentile(first, 50), percentile(second, 50))
    p95 = (percentile(first, 95), percentile(second, 95))
    growth = (rss_end - rss_after_warmup) / rss_after_warmup
    print(
        f"\nsoak: {AGENTS} agents, {SECONDS:.0f} s, {calls} calls ({calls / SECONDS:.0f}/s, all ok); "
        f"server RSS {rss_after_warmup / 1024:.1f} -> {rss_end / 1024:.1f} MiB ({growth:+.1%}); "
        f"p50 {p50[0] * 1000:.1f} -> {p50[1] * 1000:.1f} ms, p95 {p95[0] * 1000:.1f} -> {p95[1] * 1000:.1f} ms"
    )
    assert growth < 0.10, f"server memory grew {growth:.1%}"
    # stable: the second half's percentiles within 2x the first's (noise on a shared 2-core machine included)
    assert p50[1] < 2 * p50[0] + 0.005 and p95[1] < 2 * p95[0] + 0.010, (p50, p95)
