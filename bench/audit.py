"""Audit benchmark: records per second through ``AuditLog.record`` with the JetStream stream sink against a no-op
sink, measured in the same run (medians and ratios; these machines are shared and noisy); then the stream writer's
modes side by side, and the loss window of a crash.

    .venv/bin/python bench/audit.py [--records N] [--rounds R] [--callers C] [--kills K] [--rate CALLS_PER_S]
    .venv/bin/python bench/audit.py --sink-cpu [--records N] [--rounds R]

``--sink-cpu`` measures only this process's CPU per record of a sequential caller's audit: ``record`` alone, and the
stream sink's write of one record (an acknowledged publish: what a stdio call's record costs the server); run it
with ``PYTHONPATH=DIR/src`` (``git archive main src | tar -x -C DIR``) for the "before".

Three figures per sink: ``record`` alone (the synchronous cost a tool call pays: digest, seal, queue), the same
with the event loop given a turn after each record (as a server between calls: the writer runs alongside), and
end to end (record N, then ``flush`` until all are stored).

Modes (bench/audit_modes.py), each call doing a NATS round trip of its own first: ``no audit`` (the baseline),
``serial`` (one acknowledged publish per record, as before atomic batches), ``async`` (the default: backlogs of 64+
records as atomic batches, the answer never waits), ``async+wait100ms`` (``batch_wait_ms`` 100), ``sync`` (each call
waits for its record's acknowledgement); with 1 and ``C`` concurrent callers: nats-server CPU per call (from /proc)
and the audit's share of it (minus ``no audit``) as a ratio to ``serial``, round trips per record, the time a call
waits. The loss window: a writer process answering ``--rate`` calls a second is SIGKILLed; the calls it answered
whose records the stream lacks.
Prints tables and writes bench/results/audit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.env import connected  # noqa: E402
from tests.support.natsserver import start_nats_server  # noqa: E402

from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.security.audit.event import AuditEvent  # noqa: E402
from nats_mcp.security.audit.log import AuditLog  # noqa: E402
from nats_mcp.security.audit.record import AuditRecord  # noqa: E402
from nats_mcp.security.audit.store import StreamSink  # noqa: E402
from nats_mcp.security.principal import Principal  # noqa: E402

PRINCIPAL = Principal(subject="bench", issuer="https://idp.example", method="jwt", peer="10.0.0.1")
ARGS = {"channel": "general", "message": "x" * 200, "metadata": {"k": "v"}}


class NoopSink:
    name = "noop"

    async def write(self, batch: Sequence[AuditRecord]) -> int:
        return len(batch)

    async def wait_ready(self, timeout: float) -> None:
        return None

    async def close(self) -> None:
        return None


def call(log: AuditLog, i: int) -> None:
    log.record(
        AuditEvent(
            "tool_call",
            principal=PRINCIPAL,
            transport="http",
            tool="warp_channels_send",
            namespace="bench",
            outcome="ok",
            latency_ms=0.5 + i % 7,
            arguments={**ARGS, "i": i},
        ),
    )


async def one_round(make: Any, n: int) -> dict[str, float]:
    """records/s for: record alone, record + a loop turn, record then flush (end to end)."""
    figures: dict[str, float] = {}
    log: AuditLog = make(max_pending=n * 3 + 10)
    t = time.perf_counter()
    for i in range(n):
        call(log, i)
    figures["record"] = n / (time.perf_counter() - t)
    assert await log.flush(120)
    t = time.perf_counter()
    for i in range(n):
        call(log, i)
        await asyncio.sleep(0)
    figures["record+yield"] = n / (time.perf_counter() - t)
    assert await log.flush(120)
    t = time.perf_counter()
    for i in range(n):
        call(log, i)
    assert await log.flush(120)
    figures["end to end"] = n / (time.perf_counter() - t)
    await log.close()
    return figures


async def sink_cpu(conn: NatsConnection, n: int, rounds: int) -> dict[str, float]:
    """µs of this process's CPU per record, medians of ``rounds``: ``record`` alone (no-op sink: digest, seal,
    queue), and the stream sink writing sealed records one acknowledged publish each (``write`` awaited per record,
    as a sequential caller's records go), the writer's task and the flush machinery left out."""
    alone: list[float] = []
    written: list[float] = []
    for _ in range(rounds + 1):  # the first round is a warm-up (creates the stream)
        log = AuditLog([NoopSink()], max_pending=n + 10)
        records = []
        t = time.process_time()
        for i in range(n):
            call(log, i)
        alone.append((time.process_time() - t) / n * 1e6)
        records = list(log._pending)  # sealed, in order (the no-op writer has not run: no await since)
        await log.close()
        sink = StreamSink(conn, atomic=False)
        t = time.process_time()
        for record in records:
            assert await sink.write((record,)) == 1
        written.append((time.process_time() - t) / n * 1e6)
    figures = {"record_us": statistics.median(alone[1:]), "publish_us": statistics.median(written[1:])}
    print(
        f"CPU per record (this process, median of {rounds} x {n}): record {figures['record_us']:.1f} µs; "
        f"stream sink write (one acknowledged publish) {figures['publish_us']:.1f} µs"
    )
    return figures


async def main_sink_cpu(n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_nats_server(Path(tmp) / "nats")
        try:
            async with connected(Path(tmp), server.url) as conn:
                await sink_cpu(conn, n, rounds)
        finally:
            server.close()


async def main(n: int, rounds: int, callers: int, kills: int, rate: float) -> None:
    from audit_modes import compare_modes, loss_window  # bench/, beside this script

    with tempfile.TemporaryDirectory() as tmp:
        server = start_nats_server(Path(tmp) / "nats")
        try:
            async with connected(Path(tmp), server.url) as conn:
                results = await bench(conn, n, rounds)
                assert server.pid is not None
                results["modes"] = await compare_modes(conn, server.pid, n, rounds, callers)
            results["loss"] = await loss_window(Path(tmp), server.url, kills, rate)
        finally:
            server.close()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(results, indent=2))


async def bench(conn: NatsConnection, n: int, rounds: int) -> dict[str, Any]:
    sinks: dict[str, Any] = {
        "noop": lambda **kw: AuditLog([NoopSink()], **kw),
        "stream": lambda **kw: AuditLog([StreamSink(conn)], **kw),
    }
    await one_round(sinks["stream"], 50)  # warm-up: creates the stream
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in sinks}
    for _ in range(rounds):
        for name, make in sinks.items():  # alternate, so drift hits both alike
            for key, value in (await one_round(make, n)).items():
                samples[name].setdefault(key, []).append(value)
    rows = []
    print(f"audit: {n} records per round, {rounds} rounds, medians (records/s)")
    print(f"{'measure':<14} {'noop sink':>12} {'stream sink':>12} {'stream/noop':>12}")
    for key in samples["noop"]:
        noop, stream = statistics.median(samples["noop"][key]), statistics.median(samples["stream"][key])
        rows.append({"measure": key, "noop_per_s": noop, "stream_per_s": stream, "ratio": stream / noop})
        print(f"{key:<14} {noop:>12,.0f} {stream:>12,.0f} {stream / noop:>12.2f}")
    per_record_us = 1e6 / statistics.median(samples["noop"]["record"])
    print(f"record() costs {per_record_us:.1f} µs per call (median, noop sink)")
    return {"records": n, "rounds": rounds, "rows": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--callers", type=int, default=8, help="concurrent callers in the modes comparison")
    parser.add_argument("--kills", type=int, default=5, help="writer processes killed to measure the loss window")
    parser.add_argument("--rate", type=float, default=1000, help="calls/s of the killed writer (0: flat out)")
    parser.add_argument("--sink-cpu", action="store_true", help="only this process's CPU per record (see above)")
    args = parser.parse_args()
    if args.sink_cpu:
        asyncio.run(main_sink_cpu(args.records, args.rounds))
    else:
        asyncio.run(main(args.records, args.rounds, args.callers, args.kills, args.rate))
