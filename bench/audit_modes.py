"""Benchmark boundary of the audit stream writer's modes and of the loss window after a crash (run by bench/audit.py).

``compare_modes``: the same calls audited by each mode, alternated per round, with 1 and ``callers`` concurrent
callers; nats-server CPU per record is read from /proc (utime + stime of the server process) around each run.
``loss_window``: a writer process (this file run as a script) answers calls as fast as it can and prints each
answered record's seq; it is SIGKILLed mid-run, and the stream is read for the last record of its chain.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.env import connected  # noqa: E402

from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.security.audit.event import AuditEvent  # noqa: E402
from nats_mcp.security.audit.log import AuditLog  # noqa: E402
from nats_mcp.security.audit.store import newest  # noqa: E402
from nats_mcp.security.audit.streamsink import StreamSink  # noqa: E402
from nats_mcp.security.principal import Principal  # noqa: E402

PRINCIPAL = Principal(subject="bench", issuer="https://idp.example", method="jwt", peer="10.0.0.1")
ARGS = {"channel": "general", "message": "x" * 200}
MODES: dict[str, dict[str, Any]] = {
    "no audit": {"atomic": None, "durability": "async", "batch_wait_s": 0.0},
    "serial": {"atomic": False, "durability": "async", "batch_wait_s": 0.0},
    "async": {"atomic": True, "durability": "async", "batch_wait_s": 0.0},
    "async+wait100ms": {"atomic": True, "durability": "async", "batch_wait_s": 0.1},
    "sync": {"atomic": True, "durability": "sync", "batch_wait_s": 0.0},
}
"""``no audit`` (a sink that stores nothing) is the baseline: what the calls' own round trips cost the server."""
CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S


def event(i: int) -> AuditEvent:
    return AuditEvent(
        "tool_call",
        principal=PRINCIPAL,
        transport="http",
        tool="warp_channels_send",
        namespace="bench",
        outcome="ok",
        latency_ms=0.5,
        arguments={**ARGS, "i": i},
    )


class NoopSink:
    name = "noop"
    round_trips = 0

    async def write(self, batch: Any) -> int:
        return len(batch)

    async def wait_ready(self, timeout: float) -> None:
        return None

    async def close(self) -> None:
        return None


def make_log(conn: NatsConnection, mode: str, n: int) -> tuple[AuditLog, Any]:
    options = dict(MODES[mode])
    atomic = options.pop("atomic")
    sink = NoopSink() if atomic is None else StreamSink(conn, atomic=atomic)
    return AuditLog([sink], transport="http", max_pending=2 * n + 100, **options), sink


async def run_mode(conn: NatsConnection, pid: int, mode: str, n: int, callers: int) -> dict[str, float]:
    log, sink = make_log(conn, mode, n)
    for i in range(20):  # warm-up: the stream looked up, the chain started
        log.record(event(i))
    assert await log.flush(60)
    trips, cpu, started = sink.round_trips, server_cpu_s(pid), time.perf_counter()
    waits: list[float] = []

    async def caller(first: int) -> None:
        for i in range(first, n, callers):
            await conn.client.flush()  # the call's own work: a NATS round trip
            log.record(event(i))
            t = time.perf_counter()
            await log.settle()  # what the guard awaits before answering (at once unless sync)
            waits.append(time.perf_counter() - t)

    await asyncio.gather(*(caller(k) for k in range(callers)))
    assert await log.flush(120)
    wall = time.perf_counter() - started
    used = server_cpu_s(pid) - cpu
    figures = {
        "server_cpu_us_per_record": used / n * 1e6,
        "round_trips_per_record": (sink.round_trips - trips) / n,
        "records_per_s": n / wall,
        "wait_us_p50": statistics.median(waits) * 1e6,
        "wait_us_p95": statistics.quantiles(waits, n=20)[-1] * 1e6,
    }
    await log.close()
    return figures


async def compare_modes(conn: NatsConnection, pid: int, n: int, rounds: int, callers: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for width in sorted({1, callers}):
        samples: dict[str, dict[str, list[float]]] = {mode: {} for mode in MODES}
        for _ in range(rounds):
            for mode in MODES:  # alternate, so drift hits every mode alike
                for key, value in (await run_mode(conn, pid, mode, n, width)).items():
                    samples[mode].setdefault(key, []).append(value)
        medians = {mode: {key: statistics.median(v) for key, v in values.items()} for mode, values in samples.items()}
        none = medians["no audit"]["server_cpu_us_per_record"]
        base = medians["serial"]["server_cpu_us_per_record"] - none
        print(f"\naudit stream modes: {n} calls per round, {width} concurrent caller(s), {rounds} rounds, medians")
        print("(each call: a NATS round trip of its own, then its record; audit CPU = server CPU minus 'no audit')")
        print(
            f"{'mode':<16} {'srv CPU µs/call':>15} {'audit µs/rec':>12} {'vs serial':>9} {'trips/rec':>9} "
            f"{'calls/s':>8} {'wait p50 µs':>11} {'wait p95 µs':>11}"
        )
        for mode, m in medians.items():
            audit = m["server_cpu_us_per_record"] - none
            ratio = audit / base if base > 0 else float("nan")
            rows.append(
                {"mode": mode, "callers": width, **m, "audit_cpu_us": audit, "ratio": ratio, "baseline": "serial"}
            )
            print(
                f"{mode:<16} {m['server_cpu_us_per_record']:>15.1f} {audit:>12.1f} {ratio:>9.2f} "
                f"{m['round_trips_per_record']:>9.3f} {m['records_per_s']:>8,.0f} {m['wait_us_p50']:>11.0f} "
                f"{m['wait_us_p95']:>11.0f}"
            )
    return rows


async def loss_window(
    tmp: Path, url: str, kills: int, rate: float, answered_before_kill: int = 2000
) -> list[dict[str, Any]]:
    """Per mode: SIGKILL a writer answering ``rate`` calls a second (0: flat out); how many answered calls the stream
    lacks, and how long before the kill the first of them was answered."""
    rows: list[dict[str, Any]] = []
    async with connected(tmp / "reader", url) as conn:
        for mode in (m for m in MODES if MODES[m]["atomic"] is not None):
            lost: list[int] = []
            lost_ms: list[float] = []
            for k in range(kills):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    url,
                    mode,
                    str(tmp / f"writer-{mode}-{k}"),
                    str(rate),
                    stdout=asyncio.subprocess.PIPE,
                )
                assert proc.stdout is not None
                chain = (await proc.stdout.readline()).decode().strip()
                answered, at = 0, 0.0
                while answered < answered_before_kill:
                    line = await proc.stdout.readline()
                    if not line:
                        break
                    seq, stamp = line.split()
                    answered, at = int(seq), float(stamp)
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                records, _ = await newest(conn, 1, chain=chain)
                stored = int(json.loads(records[0].data)["seq"]) if records else 0
                lost.append(max(0, answered - stored))
                lost_ms.append(max(0.0, at - _stored_time(records)) * 1000 if answered > stored else 0.0)
            row = {"mode": mode, "kills": kills, "lost_max": max(lost), "lost_median": statistics.median(lost)}
            row["lost_ms_max"] = max(lost_ms)
            rows.append(row)
    pace = f"{rate:g} calls/s" if rate else "flat out"
    print(f"\nloss window: writer answering {pace}, SIGKILLed after {answered_before_kill} answers, {kills} kills")
    print(f"{'mode':<14} {'lost (median)':>13} {'lost (max)':>10} {'max ms of answers lost':>23}")
    for row in rows:
        print(f"{row['mode']:<14} {row['lost_median']:>13.0f} {row['lost_max']:>10} {row['lost_ms_max']:>23.1f}")
    return rows


def _stored_time(records: list[Any]) -> float:
    if not records:
        return 0.0
    stamp = json.loads(records[0].data)["time"]
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC).timestamp()


async def _writer(url: str, mode: str, tmp: Path, rate: float) -> None:
    """The killed process: audits calls at ``rate`` a second (0: flat out), printing each answered call's seq and
    the time it was answered."""
    async with connected(tmp, url) as conn:
        log, _ = make_log(conn, mode, 100_000)
        print(log.chain, flush=True)
        i = 0
        started = time.monotonic()
        while True:
            if rate:
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))  # the pace of the callers
            record = log.append(event(i))
            assert record is not None
            await log.settle()
            sys.stdout.write(f"{record.seq} {time.time():.6f}\n")
            sys.stdout.flush()
            await asyncio.sleep(0)
            i += 1


if __name__ == "__main__":
    asyncio.run(_writer(sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])))
