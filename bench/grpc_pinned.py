"""Benchmark boundary of the pinned gRPC link (transports/grpc/pinned.py): its cost next to gRPC's own TLS.

    .venv/bin/python bench/grpc_pinned.py [--quick]

One bare grpc.aio unary echo with mutual TLS (bench/grpc_tools.py's, ``nats-mcp certs init`` certificates, no NATS,
no nats-mcp server: only the client side differs), called alternately (the order rotated each round), each sample
a fixed time of calls, sequentially and with 50 calls in flight on one channel:

a. a channel doing TLS itself (``open_channel``: gRPC's core, BoringSSL) — the baseline;
b. a pinned channel (``GrpcTarget.pins`` = the CA's pin): HTTP/2 to a private Unix socket, carried by this
   process over Python TLS connections whose pins were checked.

Prints calls/s and the paired ratio b/a (median of per-round ratios); writes bench/results/grpc_pinned.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from grpc_tools import CLIENT, ECHO_METHOD, ECHO_SERVER, PAYLOAD, make_certs, start, stop, wait_port  # noqa: E402
from http_tools import IN_FLIGHT, BenchError, Call, Sample, sample  # noqa: E402

from nats_mcp.core.pins import pins_of_file  # noqa: E402
from nats_mcp.transports.grpc.client import GrpcTarget, connect  # noqa: E402

RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Plan:
    rounds: int
    sample_s: float


QUICK = Plan(rounds=3, sample_s=0.3)
FULL = Plan(rounds=9, sample_s=1.5)


@contextlib.asynccontextmanager
async def echo_caller(target: GrpcTarget) -> AsyncIterator[Call]:
    async with connect(target) as (channel, _):
        method = channel.unary_unary(ECHO_METHOD)

        async def call() -> object:
            reply = await method(PAYLOAD, timeout=30)
            if reply != PAYLOAD:
                raise BenchError("the echo answered something else")
            return reply

        await call()
        yield call


async def run(plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-pinned-") as tmp:
        base = Path(tmp)
        certs = await asyncio.to_thread(make_certs, base)
        argv = [
            sys.executable,
            "-c",
            ECHO_SERVER,
            *(str(certs / f) for f in ("server.pem", "server-key.pem", "ca.pem")),
        ]
        echo = start("echo", [*argv, str(base / "echo.port")], {**os.environ}, base, base / "echo.port")
        try:
            await wait_port(echo)
            plain = GrpcTarget(
                f"localhost:{echo.port}",
                ca_file=certs / "ca.pem",
                cert_file=certs / "clients" / f"{CLIENT}.pem",
                key_file=certs / "clients" / f"{CLIENT}-key.pem",
            )
            pinned = GrpcTarget(**{**asdict(plain), "pins": tuple(pins_of_file(certs / "ca.pem"))})
            rates: dict[str, list[Sample]] = {}
            async with echo_caller(plain) as a, echo_caller(pinned) as b:
                calls = {"a. gRPC TLS": a, "b. pinned link": b}
                for width in (1, IN_FLIGHT):
                    for r in range(plan.rounds):
                        names = list(calls)
                        names = names[r % 2 :] + names[: r % 2]  # rotate who goes first
                        for name in names:
                            got = await sample(calls[name], plan.sample_s, width, echo.process.pid)
                            rates.setdefault(f"{name}|{width}", []).append(got)
        finally:
            stop([echo.process])
    rows = []
    for width in (1, IN_FLIGHT):
        a, b = rates[f"a. gRPC TLS|{width}"], rates[f"b. pinned link|{width}"]
        rows.append(
            {
                "load": "seq" if width == 1 else f"{width} in flight",
                "a_calls_s": statistics.median(s.rate for s in a),
                "b_calls_s": statistics.median(s.rate for s in b),
                "a_client_cpu_ms": statistics.median(s.client_ms for s in a),
                "b_client_cpu_ms": statistics.median(s.client_ms for s in b),
                "vs": {
                    "baseline": "a. gRPC TLS",
                    "ratio": statistics.median(s.rate for s in b) / statistics.median(s.rate for s in a),
                    "paired": statistics.median(y.rate / x.rate for x, y in zip(a, b, strict=True)),
                    "target": None,
                },
            }
        )
    return {"plan": asdict(plan), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few, short samples (seconds)")
    args = parser.parse_args()
    started = time.perf_counter()
    report = asyncio.run(run(QUICK if args.quick else FULL))
    report |= {
        "quick": args.quick,
        "elapsed_s": time.perf_counter() - started,
        "environment": {"python": platform.python_version(), "load_avg": os.getloadavg()},
    }
    print(f"\n{'load':<14} {'a calls/s':>9} {'b calls/s':>9} {'a cli ms':>8} {'b cli ms':>8} {'b/a paired':>10}")
    for x in report["rows"]:
        print(
            f"{x['load']:<14} {x['a_calls_s']:9.0f} {x['b_calls_s']:9.0f} {x['a_client_cpu_ms']:8.3f}"
            f" {x['b_client_cpu_ms']:8.3f} {x['vs']['paired']:9.2f}x"
        )
    print(
        "(a: gRPC's own TLS; b: the pinned link; calls/s: medians of the rounds; cli ms: this process's CPU per call)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grpc_pinned.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / 'grpc_pinned.json'} in {report['elapsed_s']:.1f} s")


if __name__ == "__main__":
    main()
