"""Benchmark boundary of stdio's dispatch alone: the CPU per request of api/direct.py vs the SDK's dispatcher.

    .venv/bin/python bench/stdio_dispatch.py [--calls N] [--runs N]

In process, no NATS: the server as ``build_server()`` makes it without coordination services (a ``tools/call``
answers its ``internal`` tool error through the whole handler, envelope and wire path; a ``ping`` is the
dispatch and nothing else), served over os pipes by transports/stdio.py (tests/support/stdio_pipes.py) with
``own_dispatch`` on and off, driven by raw JSON-RPC lines from the same process, one request in flight at a
time. Both eras (2025-11-25 after the handshake, 2026-07-28 with the per-request envelope). The two sides are
sampled alternately; the figure is this process's CPU time per request (client and server share it: the client
side is the same lines on both), as the median of the runs and of the per-run ratios own/SDK.

``--tools``: the same with real tools instead (``warp_handle_get``, ``warp_channels_send``, ``warp_channels_read``
limit 20), the server built as ``nats-mcp serve`` builds it on stdio (the runtime, the guard, the audit log) against
a nats-server of its own, protocol 2026-07-28: the whole call's CPU, own vs SDK, in one process (so the machine's
load moves both sides alike).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import mcp_types as types

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.stdio_pipes import LineClient, piped

from nats_mcp.api.server import build_server

ENVELOPE = {
    types.PROTOCOL_VERSION_META_KEY: "2026-07-28",
    types.CLIENT_CAPABILITIES_META_KEY: {},
    types.CLIENT_INFO_META_KEY: {"name": "bench", "version": "1.0"},
}


async def loop(
    client: LineClient, modern: bool, method: str, calls: int, first: int, call: dict[str, Any] | None = None
) -> float:
    """CPU seconds per request for ``calls`` requests, one at a time."""
    params: dict[str, Any] = call or ({"name": "warp_handle_get", "arguments": {}} if method == "tools/call" else {})
    if modern:
        params = {**params, "_meta": ENVELOPE}
    started = time.process_time()
    for n in range(first, first + calls):
        await client.send({"jsonrpc": "2.0", "id": n, "method": method, "params": params})
        await client.answer(n)
        client.lines.clear()
    return (time.process_time() - started) / calls


async def main(calls: int, runs: int) -> None:
    server = build_server()
    results: dict[tuple[str, str, bool], list[float]] = {}
    for modern in (False, True):
        era = "2026-07-28" if modern else "2025-11-25"
        async with piped(server, own_dispatch=True) as own, piped(server, own_dispatch=False) as sdk:
            for client in (own, sdk):
                if not modern:
                    init = {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "b", "version": "1"},
                    }
                    await client.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
                    await client.answer(0)
                    await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
                await loop(client, modern, "ping", 200, 1)  # warm-up
            first = 1000
            for _ in range(runs):
                for method in ("ping", "tools/call"):
                    for own_dispatch, client in ((True, own), (False, sdk)):
                        cpu = await loop(client, modern, method, calls, first)
                        first += calls
                        results.setdefault((era, method, own_dispatch), []).append(cpu)
    print(f"{'era':<11} {'method':<11} {'own µs':>8} {'SDK µs':>8} {'own/SDK':>8}  (CPU per request, medians)")
    for era in ("2025-11-25", "2026-07-28"):
        for method in ("ping", "tools/call"):
            own_cpu, sdk_cpu = results[(era, method, True)], results[(era, method, False)]
            paired = statistics.median(a / b for a, b in zip(own_cpu, sdk_cpu, strict=True))
            own_us, sdk_us = statistics.median(own_cpu) * 1e6, statistics.median(sdk_cpu) * 1e6
            print(f"{era:<11} {method:<11} {own_us:8.0f} {sdk_us:8.0f} {paired:8.2f}")


TOOL_CALLS = {
    "handle_get": {"name": "warp_handle_get", "arguments": {}},
    "channels_send": {"name": "warp_channels_send", "arguments": {"channel": "roadmap", "message": "bench"}},
    "channels_read": {"name": "warp_channels_read", "arguments": {"channel": "roadmap", "limit": 20}},
}


async def tools(calls: int, runs: int) -> None:
    import tempfile

    from tests.support.env import settings_for
    from tests.support.natsserver import NatsServer

    from nats_mcp.api.server import local_security
    from nats_mcp.runtime import Runtime
    from nats_mcp.security.policy import Policy

    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp, NatsServer(Path(tmp) / "nats").start() as nats:
        config = settings_for(Path(tmp), NATS_URL=nats.url, NATS_MCP_NAMESPACE="bench-dispatch")
        async with Runtime(config, Policy.load(None), transport="stdio", local_agent=True, observe=False) as runtime:
            assert await runtime.conn.wait_connected(10)
            coordinator = runtime.coordinator
            security = local_security(runtime.guard, config.security, "bench-dispatch")
            server = build_server(coordinator, coordinator.local_caller, "warp_", security)
            results: dict[tuple[str, bool], list[float]] = {}
            async with piped(server, own_dispatch=True) as own, piped(server, own_dispatch=False) as sdk:
                first = 1
                for client in (own, sdk):
                    for call in TOOL_CALLS.values():
                        await loop(client, True, "tools/call", 50, first, call)  # warm-up (and a channel to read)
                        first += 50
                for _ in range(runs):
                    for name, call in TOOL_CALLS.items():
                        for own_dispatch, client in ((True, own), (False, sdk)):
                            cpu = await loop(client, True, "tools/call", calls, first, call)
                            first += calls
                            results.setdefault((name, own_dispatch), []).append(cpu)
    print(f"{'tool (2026-07-28)':<18} {'own µs':>8} {'SDK µs':>8} {'own/SDK':>8}  (CPU per call, client included)")
    for name in TOOL_CALLS:
        own_cpu, sdk_cpu = results[(name, True)], results[(name, False)]
        paired = statistics.median(a / b for a, b in zip(own_cpu, sdk_cpu, strict=True))
        own_us, sdk_us = statistics.median(own_cpu) * 1e6, statistics.median(sdk_cpu) * 1e6
        print(f"{name:<18} {own_us:8.0f} {sdk_us:8.0f} {paired:8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tools", action="store_true", help="real tools against a nats-server of its own")
    args = parser.parse_args()
    asyncio.run(tools(args.calls, args.runs) if args.tools else main(args.calls, args.runs))
