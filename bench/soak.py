"""Soak benchmark boundary: latency and memory of one HTTP gateway under a sustained mixed load, as ratios.

    .venv/bin/python bench/soak.py [--quick] [--agents N] [--seconds S]

The load of tests/soak (tests/support/soak.py: agents posting, reading, sending DMs, offering, claiming and
completing work, discovering) through one `nats-mcp serve --transport http` on its own nats-server. What the soak
test used to assert moves here, measured and printed, never failing the run (they failed a CI run on a loaded
machine, issue 26):

a. latency drift: the p50 and p95 of the second half of the run against the first half's, after a warm-up (the
   first tenth, at least 5 s): the baseline is the same run's first half (target: <= 2x);
b. memory growth: the server's RSS at the end against after the warm-up (target: <= 1.10x);
c. the RSS every tenth of the run and the calls, p50 and p95 of every tenth (recorded, no target).

Full form: 50 agents for 120 s; quick: 10 agents for 20 s. Writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.http_server import api_key, launch, mcp_client  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402
from tests.support.soak import UNLIMITED, Tally, agent_loop, percentile, register, rss_kib  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LATENCY_TARGET = 2.0
GROWTH_TARGET = 1.10


def ratio_row(measure: str, value: float, baseline: float, at_most: float, unit: str) -> dict[str, Any]:
    ratio = value / baseline if baseline else float("inf")
    return {
        "measure": measure,
        "unit": unit,
        "value": round(value, 3),
        "baseline": round(baseline, 3),
        "ratio": round(ratio, 3),
        "target": f"<= {at_most:.2f}x",
        "met": ratio <= at_most,
    }


def windows(samples: list[tuple[float, float]], start: float, seconds: float) -> list[dict[str, float]]:
    """Calls, p50 and p95 (ms) of every tenth of the run."""
    step = seconds / 10
    out = []
    for i in range(10):
        got = [d for t, d in samples if start + i * step <= t < start + (i + 1) * step]
        if len(got) >= 2:
            out.append(
                {
                    "from_s": round(i * step, 1),
                    "calls": len(got),
                    "p50_ms": round(percentile(got, 50) * 1e3, 2),
                    "p95_ms": round(percentile(got, 95) * 1e3, 2),
                }
            )
    return out


async def sample_rss(pid: int, start: float, ends: float, into: list[tuple[float, int]]) -> None:
    """The server's RSS every tenth of the run (a measurement beside the load)."""
    step = (ends - start) / 10
    while (now := time.monotonic()) < ends:
        into.append((round(now - start, 1), rss_kib(pid)))
        await asyncio.sleep(min(step, ends - now))


async def run(agents: int, seconds: float) -> dict[str, Any]:
    warmup = max(5.0, seconds / 10)
    with tempfile.TemporaryDirectory() as tmp, NatsServer(Path(tmp) / "nats", jetstream=True) as nats:
        base = Path(tmp)
        key, _ = await api_key(base, nats.url, "soak", "agent")
        server = await launch(base, "soak", nats.url, NATS_MCP_NAMESPACE="team-soak", **UNLIMITED)
        tally = Tally()
        try:
            async with AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(mcp_client(server.url, key, agent=f"soak-{i}"))
                    for i in range(agents)
                ]
                guids = await register(clients)
                start = time.monotonic()
                ends = start + seconds
                runs = [asyncio.create_task(agent_loop(c, i, guids, ends, tally)) for i, c in enumerate(clients)]
                series: list[tuple[float, int]] = []
                sampler = asyncio.create_task(sample_rss(server.proc.pid, start, ends, series))
                await asyncio.sleep(warmup)  # measuring: the load runs on its own meanwhile
                rss_warm = rss_kib(server.proc.pid)
                await asyncio.gather(*runs)
                await sampler
                rss_end = rss_kib(server.proc.pid)
        finally:
            code = await server.stop()
        if code != 0:
            raise RuntimeError(f"the server exited with {code}: {server.stderr()[-2000:]}")

    measured = [(t, d) for t, d in tally.samples if t >= start + warmup]
    middle = start + warmup + (seconds - warmup) / 2
    first = [d for t, d in measured if t < middle]
    second = [d for t, d in measured if t >= middle]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "agents": agents,
        "seconds": seconds,
        "warmup_s": warmup,
        "calls": tally.calls,
        "calls_per_s": round(tally.calls / seconds, 1),
        "items": {"broadcast": tally.broadcast, "completed": tally.completed},
        "ratios": [
            ratio_row(
                "latency p50, 2nd half vs 1st",
                percentile(second, 50) * 1e3,
                percentile(first, 50) * 1e3,
                LATENCY_TARGET,
                "ms",
            ),
            ratio_row(
                "latency p95, 2nd half vs 1st",
                percentile(second, 95) * 1e3,
                percentile(first, 95) * 1e3,
                LATENCY_TARGET,
                "ms",
            ),
            ratio_row("server RSS, end vs after warm-up", rss_end / 1024, rss_warm / 1024, GROWTH_TARGET, "MiB"),
        ],
        "rss_series_mib": [(t, round(k / 1024, 1)) for t, k in series],
        "windows": windows(tally.samples, start, seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10 agents for 20 s")
    parser.add_argument("--agents", type=int)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    agents = args.agents or (10 if args.quick else 50)
    seconds = args.seconds or (20.0 if args.quick else 120.0)
    result = asyncio.run(run(agents, seconds))
    print(f"soak: {agents} agents, {seconds:.0f} s, {result['calls']} calls ({result['calls_per_s']}/s), all ok")
    print(f"\n{'measure':<36} {'unit':>5} {'value':>9} {'baseline':>9} {'ratio':>7}  target")
    for row in result["ratios"]:
        verdict = f"{row['target']} {'ok' if row['met'] else 'MISSED'}"
        print(
            f"{row['measure']:<36} {row['unit']:>5} {row['value']:>9.2f} {row['baseline']:>9.2f} "
            f"{row['ratio']:>7.2f}  {verdict}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "soak.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
