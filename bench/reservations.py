"""Benchmark boundary of reservations: acquire/release calls per second next to ``warp_channels_send``, same run.

    .venv/bin/python bench/reservations.py [--quick]

One real nats-server on an OS-assigned port, one coordinator in this process, calls through the tools' one
dispatch (``api/tools/base.run_tool``: argument validation, the handler, the result model), no transport.
Sampled alternately, each sample a fixed number of sequential calls:

a. ``warp_channels_send`` (one JetStream publish): the baseline;
b. ``warp_reservations_acquire`` then ``warp_reservations_release`` of one path (each a KV get and a CAS write of the
   table), counted per call;
c. ``warp_reservations_acquire`` refused by a conflict (one KV get, nothing written);
d. (b) with 50 other reservations in the table (the table is one value: its size is read and written each time).

Prints calls/s and the ratio of each to (a); writes bench/results/reservations.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.env import isolated_env  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402

from nats_mcp.api.tools.base import run_tool  # noqa: E402
from nats_mcp.api.tools.coordination import TOOLS  # noqa: E402
from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.config.loader import load_settings  # noqa: E402
from nats_mcp.coord.context import Caller  # noqa: E402
from nats_mcp.coord.service import Coordinator  # noqa: E402

NAMESPACE = "bench-resv"
RESULTS = ROOT / "bench" / "results" / "reservations.json"
SPECS = {spec.suffix: spec for spec in TOOLS}


async def per_second(fn: Callable[[], Awaitable[int]], rounds: int) -> float:
    """Tool calls per second over ``rounds`` sequential runs of ``fn`` (which says how many calls it made)."""
    start, calls = time.perf_counter(), 0
    for _ in range(rounds):
        calls += await fn()
    return calls / (time.perf_counter() - start)


async def run(samples: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, NatsServer(Path(tmp) / "nats").start() as server:
        env = isolated_env(Path(tmp), NATS_URL=server.url, NATS_MCP_NAMESPACE=NAMESPACE)
        settings = load_settings(environ=env).settings
        async with NatsConnection(settings) as conn:
            coordinator = Coordinator(conn, settings, local_agent=False)
            conn.add_listener(coordinator.on_nats_event)
            if not await conn.wait_connected(10) or not await coordinator.wait_ready(30):
                raise SystemExit(f"could not set up: {conn.status()} {coordinator.setup_error}")
            me = Caller(guid=uuid.uuid4().hex, namespace=NAMESPACE, project_id="0" * 16, owner="bench")
            other = Caller(guid=uuid.uuid4().hex, namespace=NAMESPACE, project_id="0" * 16, owner="bench")
            channel = settings.channels[0].name

            async def call(who: Caller, tool: str, **args: Any) -> dict[str, Any]:
                async def caller() -> Caller:
                    return who

                outcome = await run_tool(SPECS[tool], "warp_" + tool, coordinator, caller, args)
                if outcome.error is not None:
                    raise SystemExit(f"{tool} failed: {outcome.error}")
                return outcome.structured

            await call(me, "handle_set", handle="bench")
            await call(other, "reservations_acquire", resources=["held/**"])

            async def send() -> int:
                await call(me, "channels_send", channel=channel, message="m")
                return 1

            async def acquire_release(path: str = "src/app.py") -> int:
                got = await call(me, "reservations_acquire", resources=[path])
                await call(me, "reservations_release", reservationId=got["reservationId"])
                return 2

            async def refused() -> int:
                got = await call(me, "reservations_acquire", resources=["held/x"])
                assert not got["granted"]
                return 1

            sides: dict[str, Callable[[], Awaitable[int]]] = {
                "a. channels_send": send,
                "b. acquire + release": acquire_release,
                "c. acquire refused": refused,
            }
            for fn in sides.values():  # warm up: streams, buckets, caches
                await per_second(fn, 20)
            values: dict[str, list[float]] = {name: [] for name in [*sides, "d. acquire + release, 50 held"]}
            for i in range(samples):
                names = list(sides)
                for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate the order each sample
                    values[name].append(await per_second(sides[name], rounds))
            for n in range(50):  # a fuller table, measured last (the others ran on a table of one)
                await call(other, "reservations_acquire", resources=[f"busy/{n}/**"], reason="r" * 80)
            for _ in range(samples):
                values["d. acquire + release, 50 held"].append(await per_second(acquire_release, rounds))
            await coordinator.close()
    medians = {name: statistics.median(v) for name, v in values.items()}
    base = medians["a. channels_send"]
    return {
        "platform": platform.platform(),
        "samples": samples,
        "rounds_per_sample": rounds,
        "rows": [
            {"measure": name, "calls_per_s": value, "ratio": value / base, "baseline": "a. channels_send"}
            for name, value in medians.items()
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few samples (seconds), for CI")
    args = parser.parse_args()
    result = asyncio.run(run(3 if args.quick else 9, 30 if args.quick else 150))
    width = max(len(row["measure"]) for row in result["rows"])
    print(f"{'side':<{width}}  calls/s  x channels_send")
    for row in result["rows"]:
        print(f"{row['measure']:<{width}}  {row['calls_per_s']:7.0f}  {row['ratio']:6.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
