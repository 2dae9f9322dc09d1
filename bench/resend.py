"""Benchmark boundary of resend deduplication (coord/replay.py): what a call record adds to a tool call, per call.

    .venv/bin/python bench/resend.py [--quick]

One real nats-server on an OS-assigned port, one connection in this process, no MCP (the record is all
that differs between the sides, so nothing else dilutes the difference). Sampled alternately, each sample a
fixed number of sequential calls:

a. a channel send through ``ChannelService`` (one JetStream publish): what ``warp_channels_send`` does;
b. the same inside ``CallRecords.run`` with a new token per call (a first attempt: KV create, the send, the
   KV update with the outcome): the cost every deduplicated call pays;
c. a resend answered from its record (KV create refused, KV get): what a resend costs instead of the send.

Read-only and idempotent tools take no record, so their cost is unchanged (nothing to measure). Prints the
medians, the ratios b/a and c/a and the microseconds b adds; writes bench/results/resend.json.
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

from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.bus.layout import Layout  # noqa: E402
from nats_mcp.config.loader import load_settings  # noqa: E402
from nats_mcp.coord.channels import ChannelService  # noqa: E402
from nats_mcp.coord.context import Caller  # noqa: E402
from nats_mcp.coord.replay import CallRecords, Outcome, call_token, fingerprint  # noqa: E402

NAMESPACE = "bench-resend"
RESULTS = ROOT / "bench" / "results" / "resend.json"


class Codec:
    def encode(self, result: Outcome) -> Outcome | None:
        return result

    def decode(self, outcome: Outcome) -> Outcome:
        return outcome

    def busy(self, retry_after_s: float) -> Outcome:
        raise AssertionError("no attempt runs concurrently in this benchmark")

    def reused(self) -> Outcome:
        raise AssertionError("fingerprints are fixed in this benchmark")

    def unkept(self) -> Outcome:
        raise AssertionError("outcomes are small in this benchmark")


async def rate(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    """Microseconds per call over ``calls`` sequential calls."""
    start = time.perf_counter()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - start) / calls * 1e6


async def run(rounds: int, calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, NatsServer(Path(tmp) / "nats").start() as server:
        env = isolated_env(Path(tmp), NATS_URL=server.url, NATS_MCP_NAMESPACE=NAMESPACE)
        settings = load_settings(environ=env).settings
        async with NatsConnection(settings) as conn:
            if not await conn.wait_connected(10):
                raise SystemExit(f"could not connect to NATS: {conn.status()}")
            layout = Layout(NAMESPACE)
            channels = ChannelService(conn, settings, layout)
            records = CallRecords(conn, layout)
            codec = Codec()
            who = Caller(guid=uuid.uuid4().hex, namespace=NAMESPACE, project_id="0" * 16, owner="bench")
            fp = fingerprint("channels_send", {"channel": "roadmap", "message": "m"})
            channel = settings.channels[0].name

            async def send() -> Outcome:
                sent = await channels.send(who, "bench", channel, "m")
                return {"id": sent.id, "sequence": sent.sequence}

            async def recorded() -> Outcome:
                return await records.run(call_token("bench", "s", uuid.uuid4().hex), fp, send, codec)

            kept = call_token("bench", "s", "kept")
            await records.run(kept, fp, send, codec)

            async def resend() -> Outcome:
                return await records.run(kept, fp, send, codec)

            sides = {"a. send": send, "b. send with a record": recorded, "c. resend answered": resend}
            for fn in sides.values():  # warm up: streams, bucket, caches
                await rate(fn, 20)
            samples: dict[str, list[float]] = {name: [] for name in sides}
            for i in range(rounds):
                names = list(sides)
                names = names[i % len(names) :] + names[: i % len(names)]  # rotate the order each round
                for name in names:
                    samples[name].append(await rate(sides[name], calls))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["a. send"]
    return {
        "platform": platform.platform(),
        "rounds": rounds,
        "calls_per_sample": calls,
        "rows": [
            {
                "measure": name,
                "median_us": value,
                "ratio": value / base,
                "baseline": "a. send",
                "samples": samples[name],
            }
            for name, value in medians.items()
        ],
        "added_us_per_recorded_call": medians["b. send with a record"] - base,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few samples (seconds), for CI")
    args = parser.parse_args()
    result = asyncio.run(run(5 if args.quick else 15, 50 if args.quick else 200))
    width = max(len(row["measure"]) for row in result["rows"])
    print(f"{'side':<{width}}  median us/call  x send")
    for row in result["rows"]:
        print(f"{row['measure']:<{width}}  {row['median_us']:14.0f}  {row['ratio']:6.2f}")
    print(f"a deduplicated call adds {result['added_us_per_recorded_call']:.0f} us (two KV round trips)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
