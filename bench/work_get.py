"""Work results benchmark: warp_work_get calls/s next to warp_channels_send in the same run, over MCP stdio.

    .venv/bin/python bench/work_get.py [--quick]

One nats-server, one `nats-mcp serve` over stdio driven by the SDK client. Sequential calls/s of, in
alternation (so machine noise falls on all alike): warp_channels_send (the baseline), warp_work_get of a
completed item, of a pending one, of a blocked one, and warp_work_broadcast without and with a dependency
(the broadcast now writes the item's submission record; a dependent one also its edges). Medians of the runs
and ratios to warp_channels_send. Prints a table and writes bench/results/work_get.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcp import Client, StdioServerParameters, stdio_client  # noqa: E402
from tests.support.env import isolated_env, nats_mcp_exe  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402

CAP = "bench"


async def ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error or not isinstance(result.structured_content, dict):
        raise RuntimeError(f"{tool} failed: {result.content}")
    return result.structured_content


async def per_s(fn: Callable[[], Awaitable[object]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return n / (time.perf_counter() - start)


async def measure(client: Client, runs: int, calls: int) -> dict[str, list[float]]:
    await ok(client, "warp_registry_register", agentType="bench", capabilities=[CAP])
    job = {"description": "bench", "requiredCapability": CAP}
    done = (await ok(client, "warp_work_broadcast", taskId="done", **job))["workItemId"]
    claimed = await ok(client, "warp_work_claim", capability=CAP, timeout=2000)
    assert claimed["workItem"]["id"] == done
    await ok(client, "warp_work_complete", workItemId=done, result={"ok": True})
    pending = (await ok(client, "warp_work_broadcast", taskId="pending", **job))["workItemId"]
    blocked = (await ok(client, "warp_work_broadcast", taskId="blocked", dependsOn=[pending], **job))["workItemId"]
    ops: dict[str, Callable[[], Awaitable[object]]] = {
        "channels_send": lambda: ok(client, "warp_channels_send", channel="roadmap", message="m"),
        "work_get_completed": lambda: ok(client, "warp_work_get", workItemId=done),
        "work_get_pending": lambda: ok(client, "warp_work_get", workItemId=pending),
        "work_get_blocked": lambda: ok(client, "warp_work_get", workItemId=blocked),
        "work_broadcast": lambda: ok(client, "warp_work_broadcast", taskId="b", **job),
        "work_broadcast_dependsOn": lambda: ok(client, "warp_work_broadcast", taskId="d", dependsOn=[done], **job),
    }
    rates: dict[str, list[float]] = {name: [] for name in ops}
    for r in range(runs + 1):
        for name, fn in ops.items():
            rate = await per_s(fn, calls)
            if r:  # run 0 warms up
                rates[name].append(rate)
    return rates


async def run(runs: int, calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, NatsServer(Path(tmp) / "nats", jetstream=True) as server:
        project = Path(tmp) / "project"
        project.mkdir()
        env = isolated_env(project, NATS_URL=server.url, NATS_MCP_NAMESPACE="bench-get")
        params = StdioServerParameters(command=nats_mcp_exe(), args=["serve"], env=env, cwd=str(project))
        with (Path(tmp) / "serve.log").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:  # type: ignore[arg-type]
                rates = await measure(client, runs, calls)
    base = statistics.median(rates["channels_send"])
    return {
        name: {
            "median_calls_s": round(statistics.median(v), 1),
            "min": round(min(v), 1),
            "max": round(max(v), 1),
            "ratio_to_channels_send": round(statistics.median(v) / base, 3),
        }
        for name, v in rates.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(3, 100) if args.quick else run(7, 300))
    print(f"{'calls over MCP stdio':<28}{'median/s':>10}{'min':>9}{'max':>9}{'vs send':>9}")
    for name, r in results.items():
        print(
            f"{name:<28}{r['median_calls_s']:>10.1f}{r['min']:>9.1f}{r['max']:>9.1f}{r['ratio_to_channels_send']:>8.2f}x"
        )
    out = ROOT / "bench" / "results" / "work_get.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
