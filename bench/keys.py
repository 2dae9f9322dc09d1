"""Benchmark boundary of API-key checks: nats-server CPU per authenticated call with the record read from the bucket
on every call (before) and looked up in the watched copy (after), and how long a revocation takes to reach another
process.

    .venv/bin/python bench/keys.py [--calls N] [--rounds R] [--revocations K]

CPU: ``N`` checks of a valid key (its secret in the scrypt cache, as for any key in use) per round, the two ways
alternated, nats-server's utime + stime from /proc around each; medians and their ratio. Revocation: a second
process (this file run as a script) checks ``K`` keys in a loop and prints when each is first refused; this process
revokes them one at a time and measures from just before ``revoke`` to the refusal (same machine clock); median,
p95 and max in ms. Writes bench/results/keys.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.env import connected  # noqa: E402
from tests.support.natsserver import start_nats_server  # noqa: E402

from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.security.authn.apikeys import ApiKeys  # noqa: E402
from nats_mcp.security.errors import AuthenticationError  # noqa: E402

CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def server_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S


async def cpu_per_call(conn: NatsConnection, pid: int, calls: int, rounds: int) -> dict[str, Any]:
    ways = {"read per call (before)": ApiKeys(conn, watch=False), "watched copy (after)": ApiKeys(conn)}
    key, _ = await ways["watched copy (after)"].create("bench", ["agent"])
    for keys in ways.values():
        await keys.verify(key)  # warm: the scrypt cache, the copy loaded
    samples: dict[str, dict[str, list[float]]] = {name: {"cpu": [], "wall": []} for name in ways}
    for _ in range(rounds):
        for name, keys in ways.items():
            cpu, started = server_cpu_s(pid), time.perf_counter()
            for _ in range(calls):
                await keys.verify(key)
            samples[name]["wall"].append((time.perf_counter() - started) / calls * 1e6)
            samples[name]["cpu"].append((server_cpu_s(pid) - cpu) / calls * 1e6)
    for keys in ways.values():
        await keys.aclose()
    rows = {name: {k: statistics.median(v) for k, v in s.items()} for name, s in samples.items()}
    before, after = rows["read per call (before)"], rows["watched copy (after)"]
    print(f"API-key check of a key in use: {calls} checks per round, {rounds} rounds, medians")
    print(f"{'lookup':<24} {'nats-server CPU µs/call':>23} {'check µs':>9}")
    for name, row in rows.items():
        print(f"{name:<24} {row['cpu']:>23.1f} {row['wall']:>9.1f}")
    ratio = after["cpu"] / before["cpu"] if before["cpu"] else float("nan")
    print(f"server CPU after/before: {ratio:.3f}; check time after/before: {after['wall'] / before['wall']:.3f}")
    return {"calls": calls, "rounds": rounds, "rows": rows, "ratio": ratio, "baseline": "read per call (before)"}


async def revocation_latency(tmp: Path, url: str, conn: NatsConnection, count: int) -> dict[str, Any]:
    admin = ApiKeys(conn, watch=False)
    made = [await admin.create(f"rev-{i}", ["agent"]) for i in range(count)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--watcher",
        url,
        str(tmp / "watcher"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(("\n".join(key for key, _ in made) + "\n\n").encode())
    await proc.stdin.drain()
    assert (await proc.stdout.readline()).strip() == b"ready"
    latencies: list[float] = []
    for _key, record in made:
        started = time.time()
        await admin.revoke(record.id)
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        assert line[0] == record.id, line
        latencies.append((float(line[1]) - started) * 1000)
    proc.stdin.close()
    await proc.wait()
    latencies.sort()
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else latencies[0]
    result = {"revocations": count, "median_ms": statistics.median(latencies), "p95_ms": p95, "max_ms": latencies[-1]}
    print(
        f"revocation seen by another process: {count} revocations, median {result['median_ms']:.1f} ms, "
        f"p95 {p95:.1f} ms, max {result['max_ms']:.1f} ms (target: within 1000 ms)"
    )
    return result


async def watcher(url: str, tmp: Path) -> None:
    """The other process: checks every key until each is refused, printing ``<id> <time>`` at its first refusal."""
    pending: dict[str, str] = {}
    while line := sys.stdin.readline().strip():
        pending[line[4:16]] = line
    async with connected(tmp, url) as conn:
        keys = ApiKeys(conn)
        for key in pending.values():
            await keys.verify(key)
        print("ready", flush=True)
        while pending:
            for key_id, key in list(pending.items()):
                try:
                    await keys.verify(key)
                except AuthenticationError:
                    print(f"{key_id} {time.time():.6f}", flush=True)
                    del pending[key_id]
            await asyncio.sleep(0.0005)  # poll: the resolution of the measure, well below a millisecond
        await keys.aclose()


async def main(calls: int, rounds: int, revocations: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_nats_server(Path(tmp) / "nats")
        try:
            async with connected(Path(tmp), server.url) as conn:
                assert server.pid is not None
                report = {"cpu": await cpu_per_call(conn, server.pid, calls, rounds)}
                report["revocation"] = await revocation_latency(Path(tmp), server.url, conn, revocations)
        finally:
            server.close()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "keys.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--watcher":
        asyncio.run(watcher(sys.argv[2], Path(sys.argv[3])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--revocations", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds, args.revocations))
