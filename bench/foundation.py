"""Foundation benchmarks: connect, embedded start, reconnect recovery and CLI start-up, each against a baseline
measured in the same run (medians and ratios; these machines are shared and noisy).

    .venv/bin/python bench/foundation.py [--quick]

Prints a table and writes bench/results/foundation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402

from nats_mcp.bus.connection import NatsConnection, connect_once  # noqa: E402
from nats_mcp.bus.connplan import plan_connection  # noqa: E402
from nats_mcp.bus.embedded import EmbeddedNats  # noqa: E402
from nats_mcp.config.loader import load_settings  # noqa: E402


def stats(samples: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples) * 1e3, "min_ms": min(samples) * 1e3, "max_ms": max(samples) * 1e3}


async def timed(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


def timed_sync(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


async def bench_connect(url: str, n: int, tmp: Path) -> tuple[list[float], list[float]]:
    settings = load_settings(environ={"HOME": str(tmp), "NATS_URL": url}).settings
    plan = plan_connection(settings)

    async def raw() -> None:
        nc = await nats.connect(url)
        await nc.close()

    async def ours() -> None:
        nc = await connect_once(plan)
        await nc.close()

    await raw()
    await ours()
    return await timed(raw, n), await timed(ours, n)


async def bench_recovery(server: NatsServer, n: int, tmp: Path) -> list[float]:
    settings = load_settings(environ={"HOME": str(tmp), "NATS_URL": server.url}).settings
    samples = []
    async with NatsConnection(settings) as conn:
        assert await conn.wait_connected(10)
        for _ in range(n):
            server.stop()
            while conn.connected:  # noqa: ASYNC110 - polling a flag owned by nats-py callbacks
                await asyncio.sleep(0.01)
            server.restart()
            t = time.perf_counter()
            assert await conn.wait_connected(60)
            samples.append(time.perf_counter() - t)
    return samples


def bench_embedded(n: int, tmp: Path) -> tuple[list[float], list[float], list[float]]:
    raw, cold, reuse = [], [], []
    for i in range(n):
        server = NatsServer(tmp / f"raw{i}")
        t = time.perf_counter()
        server.start()
        raw.append(time.perf_counter() - t)
        server.close()
        emb = EmbeddedNats(tmp / f"emb{i}")
        t = time.perf_counter()
        emb.ensure_running()
        cold.append(time.perf_counter() - t)
        reuse += timed_sync(emb.ensure_running, 5)
        emb.stop()
    return raw, cold, reuse


def bench_cli(n: int) -> tuple[list[float], list[float]]:
    exe = str(Path(sys.executable).parent / "nats-mcp")
    base = timed_sync(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), n)
    ours = timed_sync(lambda: subprocess.run([exe, "--version"], check=True, capture_output=True), n)
    return base, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repetitions (seconds), for CI")
    args = parser.parse_args()
    reps = 5 if args.quick else 30
    rows: list[dict[str, object]] = []

    def row(name: str, baseline_name: str, base: list[float], ours: list[float]) -> None:
        b, o = stats(base), stats(ours)
        rows.append(
            {
                "measure": name,
                "baseline": baseline_name,
                "baseline_stats": b,
                "stats": o,
                "ratio": o["median_ms"] / b["median_ms"],
            }
        )

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with NatsServer(tmp / "srv").start() as server:
            base, ours = asyncio.run(bench_connect(server.url, reps * 2, tmp))
            row("connect_once (plan, TLS guard) + close", "nats.connect + close", base, ours)
            rec = asyncio.run(bench_recovery(server, max(3, reps // 5), tmp))
            row("recovery: server back -> connected", "nats.connect + close", base, rec)
        raw, cold, reuse = bench_embedded(max(3, reps // 3), tmp)
        row("embedded cold start (lock, token, detach)", "nats-server spawn until ports file", raw, cold)
        row("embedded reuse (running server found)", "nats-server spawn until ports file", raw, reuse)
    base, ours = bench_cli(max(3, reps // 3))
    row("nats-mcp --version", "python -c pass", base, ours)

    print(f"{'measure':<44} {'median ms':>10} {'min':>8} {'max':>8}  {'baseline median':>16}  ratio")
    for r in rows:
        s, b = r["stats"], r["baseline_stats"]
        assert isinstance(s, dict) and isinstance(b, dict)
        print(
            f"{r['measure']:<44} {s['median_ms']:>10.2f} {s['min_ms']:>8.2f} {s['max_ms']:>8.2f}  "
            f"{b['median_ms']:>13.2f} ms  {r['ratio']:.2f}x  (vs {r['baseline']})"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "foundation.json").write_text(json.dumps({"reps": reps, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
