"""Benchmark boundary of the nats_* operations tools: what a tool call costs next to the bare nats-py call it wraps.

    .venv/bin/python bench/ops_tools.py [--quick]

Starts its own nats-server (a stream of 1,000 messages, 50 streams, a KV bucket) and measures, sequentially
and in alternation (so machine noise falls on both alike), each pair:

* ``nats_kv_get`` through the MCP SDK's in-memory client, the guard (example policy, reader role) and the
  ops facade, against ``kv.get`` on a bound bucket with nats-py;
* ``nats_stream_get_message`` (seq) against ``js.get_msg``;
* ``nats_stream_list`` (limit 20 of 50 streams) against ``STREAM.NAMES`` + 20 concurrent ``stream_info``;
* ``nats_publish`` (operator role) against ``nc.publish`` + ``flush``.

Prints medians (ms) and the ratio tool/bare per pair, and writes bench/results/ops_tools.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcp import Client  # noqa: E402
from nats.js.api import KeyValueConfig, StreamConfig  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402

from nats_mcp.api.server import build_server, local_security  # noqa: E402
from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.config.loader import load_settings  # noqa: E402
from nats_mcp.coord.context import Caller  # noqa: E402
from nats_mcp.coord.service import Coordinator  # noqa: E402
from nats_mcp.security.guard import Guard  # noqa: E402
from nats_mcp.security.policy import Policy  # noqa: E402

POLICY = ROOT / "docs" / "examples" / "nats-ops-policy.yaml"


async def timed(fn: Callable[[], Awaitable[object]], n: int) -> float:
    """Mean seconds per call over n sequential calls."""
    started = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - started) / n


def tool(client: Client, name: str, args: dict[str, Any]) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        result = await client.call_tool(name, args)
        assert not result.is_error, result.content
        return result

    return call


async def main(quick: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="nmcp-ops-bench-"))
    server = NatsServer(tmp / "nats")
    server.start()
    try:
        return await run(server, tmp, quick)
    finally:
        server.close()


async def run(server: NatsServer, tmp: Path, quick: bool) -> dict[str, Any]:
    def settings_for(role: str) -> Any:
        env = {
            "HOME": str(tmp),
            "NATS_URL": server.url,
            "NATS_MCP_NAMESPACE": "bench",
            "NATS_MCP_NATS_OPS_ENABLED": "true",
            "NATS_MCP_SECURITY_POLICY_FILE": str(POLICY),
            "NATS_MCP_SECURITY_LOCAL_ROLES": json.dumps([role]),
        }
        return load_settings(environ=env).settings

    reader, operator = settings_for("nats-reader"), settings_for("nats-operator")
    conn = NatsConnection(reader)
    conn.start()
    assert await conn.wait_connected(10)
    nc, js = conn.client, conn.jetstream
    await js.add_stream(StreamConfig(name="ORDERS_BENCH", subjects=["orders.bench.>"]))
    for i in range(1000):
        await js.publish(f"orders.bench.{i % 10}", b'{"order": %d, "items": [1, 2, 3]}' % i)
    for i in range(49):
        await js.add_stream(StreamConfig(name=f"ORDERS_{i:02d}", subjects=[f"orders.s{i}"]))
    kv = await js.create_key_value(KeyValueConfig(bucket="config"))
    await kv.put("feature.x", b"on" * 100)
    me = Caller(guid="0" * 32, namespace="bench", project_id="0" * 16, owner="bench")

    async def caller() -> Caller:
        return me

    servers = {}
    for name, settings in (("reader", reader), ("operator", operator)):
        coordinator = Coordinator(conn, settings)
        guard = Guard(settings.security, Policy.load(settings.security.policy_file))
        servers[name] = build_server(
            coordinator, caller, settings.tool_prefix, local_security(guard, settings.security, "bench")
        )

    async def bare_list() -> object:
        names = json.loads((await nc.request("$JS.API.STREAM.NAMES", b'{"offset":0}', timeout=5)).data)["streams"]
        return await asyncio.gather(*(js.stream_info(n) for n in sorted(names)[:20]))

    async def bare_publish() -> None:
        await nc.publish("orders.bench.x", b"hello")
        await nc.flush(timeout=5)

    async with contextlib.AsyncExitStack() as stack:
        r = await stack.enter_async_context(Client(servers["reader"], mode="legacy"))
        w = await stack.enter_async_context(Client(servers["operator"], mode="legacy"))
        pairs: dict[str, tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]] = {
            "kv_get": (tool(r, "nats_kv_get", {"bucket": "config", "key": "feature.x"}), lambda: kv.get("feature.x")),
            "stream_get_message": (
                tool(r, "nats_stream_get_message", {"stream": "ORDERS_BENCH", "seq": 500}),
                lambda: js.get_msg("ORDERS_BENCH", seq=500),
            ),
            "stream_list_20_of_50": (tool(r, "nats_stream_list", {"limit": 20}), bare_list),
            "publish": (tool(w, "nats_publish", {"subject": "orders.bench.x", "payload": "hello"}), bare_publish),
        }
        rounds, calls = (7, 30) if quick else (21, 60)
        samples: dict[str, dict[str, list[float]]] = {k: {"tool": [], "bare": []} for k in pairs}
        for tool_fn, bare_fn in pairs.values():  # warm up
            await timed(tool_fn, 10)
            await timed(bare_fn, 10)
        for _ in range(rounds):
            for key, (tool_fn, bare_fn) in pairs.items():
                samples[key]["tool"].append(await timed(tool_fn, calls))
                samples[key]["bare"].append(await timed(bare_fn, calls))
    await conn.close()
    results: dict[str, Any] = {}
    for key, s in samples.items():
        tool_ms, bare_ms = statistics.median(s["tool"]) * 1e3, statistics.median(s["bare"]) * 1e3
        ratios = [t / b for t, b in zip(s["tool"], s["bare"], strict=True)]
        results[key] = {
            "tool_median_ms": round(tool_ms, 3),
            "bare_median_ms": round(bare_ms, 3),
            "ratio_median": round(statistics.median(ratios), 2),
            "rounds": rounds,
            "calls": calls,
        }
    return {"machine": platform.platform(), "python": platform.python_version(), "results": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    report = asyncio.run(main(parser.parse_args().quick))
    print(f"{'pair':24} {'tool ms':>9} {'bare ms':>9} {'ratio':>7}")
    for key, r in report["results"].items():
        print(f"{key:24} {r['tool_median_ms']:9.3f} {r['bare_median_ms']:9.3f} {r['ratio_median']:7.2f}")
    out = ROOT / "bench" / "results" / "ops_tools.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
