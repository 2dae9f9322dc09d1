"""Channel read benchmark: read(limit=50) cost against history length, and batched vs per-sequence direct gets.

    .venv/bin/python bench/channels_read.py [--quick] [--profile]

Starts its own nats-server, fills two channels with 1,000 and 20,000 messages and measures on both, in
alternation (so machine noise falls on both alike): the service's ``read(limit=50)`` (first page, a
cursor page, an ``after_sequence`` page), its parts (stream info, one batched direct get of 50), Warp's
way (stream info + one direct get per sequence) and ``read(limit=1000)``.
Prints a table and writes bench/results/channels_read.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.history import fill_channel  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402

from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.bus.directget import get_batch  # noqa: E402
from nats_mcp.bus.layout import Layout  # noqa: E402
from nats_mcp.config.coordination import ChannelSettings  # noqa: E402
from nats_mcp.config.loader import load_settings  # noqa: E402
from nats_mcp.coord.channels import ChannelService  # noqa: E402
from nats_mcp.coord.context import Caller  # noqa: E402

LAYOUT = Layout("bench")
SIZES = {"small": 1_000, "big": 20_000}


def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "median_ms": round(statistics.median(samples) * 1e3, 3),
        "p90_ms": round(samples[int(len(samples) * 0.9)] * 1e3, 3),
        "min_ms": round(samples[0] * 1e3, 3),
        "n": len(samples),
    }


async def sample(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


async def fill(conn: NatsConnection, channel: str, n: int) -> None:
    await fill_channel(conn, LAYOUT, channel, n)


def operations(
    svc: ChannelService, conn: NatsConnection, caller: Caller, channel: str, cursor: str | None
) -> dict[str, Callable[[], Awaitable[object]]]:
    js, nc, stream = conn.jetstream, conn.client, LAYOUT.channel_stream(channel)

    async def per_sequence() -> None:
        last = (await js.stream_info(stream)).state.last_seq
        for seq in range(last - 49, last + 1):
            await js.get_msg(stream, seq, direct=True)

    async def batch50() -> None:
        await get_batch(nc, stream, 1, 50)

    return {
        "read50_first_page": lambda: svc.read(caller, channel, limit=50),
        "read50_cursor_page": lambda: svc.read(caller, channel, limit=50, cursor=cursor),
        "read50_after_sequence": lambda: svc.read(caller, channel, limit=50, after_sequence=500),
        "stream_info": lambda: js.stream_info(stream),
        "batch_direct_get_50": batch50,
        "per_sequence_get_50": per_sequence,
        "read1000": lambda: svc.read(caller, channel, limit=1000),
    }


async def measure(svc: ChannelService, conn: NatsConnection, caller: Caller, rounds: int) -> dict[str, object]:
    """Every operation on both channels in alternation, ``rounds`` times, so noise falls on both alike."""
    ops = {}
    for channel in SIZES:
        cursor = (await svc.read(caller, channel, limit=50)).next_cursor
        ops[channel] = operations(svc, conn, caller, channel, cursor)
    samples: dict[str, dict[str, list[float]]] = {c: {op: [] for op in ops[c]} for c in SIZES}
    for r in range(rounds + 1):
        for op in ops["small"]:
            n = 2 if op in ("per_sequence_get_50", "read1000") else 10
            for channel in SIZES:
                got = await sample(ops[channel][op], n)
                if r:  # round 0 warms up
                    samples[channel][op] += got
    return {f"history_{SIZES[c]}": {op: summary(v) for op, v in samples[c].items()} for c in SIZES}


async def run(rounds: int, profile: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, NatsServer(Path(tmp) / "nats", jetstream=True) as server:
        settings = load_settings(environ={"HOME": tmp, "NATS_URL": server.url}).settings
        channels = [
            ChannelSettings(name=c, description="bench", max_messages=100_000, max_bytes=256 << 20) for c in SIZES
        ]
        settings = settings.model_copy(update={"channels": channels})
        conn = NatsConnection(settings)
        conn.start()
        assert await conn.wait_connected(10)
        try:
            svc = ChannelService(conn, settings, LAYOUT)
            caller = Caller(guid=uuid.uuid4().hex, namespace="bench", project_id="0" * 16, owner="bench")
            await svc.ensure_streams()
            for channel, n in SIZES.items():
                await fill(conn, channel, n)
            results = await measure(svc, conn, caller, rounds)
            if profile:
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(200):
                    await svc.read(caller, "big", limit=50)
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            return results
        finally:
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(3 if args.quick else 20, args.profile))
    small, large = results["history_1000"], results["history_20000"]
    assert isinstance(small, dict) and isinstance(large, dict)
    print(f"{'operation':<24}{'1k median ms':>14}{'20k median ms':>15}{'ratio':>8}")
    for op in small:
        a, b = small[op]["median_ms"], large[op]["median_ms"]
        print(f"{op:<24}{a:>14.3f}{b:>15.3f}{b / a:>8.2f}")
    out = ROOT / "bench" / "results" / "channels_read.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
