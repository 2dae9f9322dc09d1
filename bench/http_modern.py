"""Benchmark boundary of the own 2026-07-28 HTTP path: server CPU per call with it on and off, paired, in one run.

    .venv/bin/python bench/http_modern.py [--quick]

Not in CI. One nats-server; two ``nats-mcp serve --transport http`` processes with the same API key (``nats-mcp keys
create``, role ``agent``), rate limits raised, one namespace: ``own`` (transports/http/modern.py answers
``tools/call``) and ``sdk`` (``NATS_MCP_HTTP_OWN_DISPATCH=0``: the SDK's single-exchange entry). The Python SDK client
in ``auto`` mode (it negotiates 2026-07-28: one stateless POST per call) calls ``warp_handle_get`` (guard and audit,
no NATS round trip but the audit's) and ``warp_channels_send`` (a JetStream publish), sequentially and 10 in flight.
Rounds alternate which server goes first; each sample is a fixed time of calls. Prints per cell the median calls/s
and server CPU per call (all threads of the server process) of each side and the median of the per-round ratios
own/sdk; writes bench/results/http_modern.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from http_tools import (  # bench/ is on sys.path: this file runs as a script
    IN_FLIGHT,
    RESULTS,
    BenchError,
    Spec,
    caller,
    create_api_key,
    launch,
    log_tails,
    sample,
    session,
    set_handle,
    stop_servers,
    wait_listening,
)
from tests.support.natsserver import NatsServer

TOOLS = {"warp_handle_get": {}, "warp_channels_send": {"channel": "roadmap", "message": "bench"}}
OFF = {"NATS_MCP_HTTP_OWN_DISPATCH": "0"}


async def measure(specs: dict[str, Spec], rounds: int, seconds: float, warmup: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(session(spec, "auto")) for name, spec in specs.items()}
        for name, client in clients.items():
            await set_handle(client, specs[name])
        for tool, args in TOOLS.items():
            for width in (1, IN_FLIGHT):
                calls = {name: caller(client, tool, args, name) for name, client in clients.items()}
                for call in calls.values():
                    for _ in range(warmup):
                        await call()
                got: dict[str, list[Any]] = {name: [] for name in specs}
                for r in range(rounds):
                    order = list(specs) if r % 2 == 0 else list(reversed(specs))
                    for name in order:
                        pid = specs[name].process.pid  # type: ignore[union-attr]
                        got[name].append(await sample(calls[name], seconds, width, pid))
                row = {
                    "tool": tool,
                    "width": width,
                    **{f"rate_{n}": statistics.median(s.rate for s in got[n]) for n in specs},
                    **{f"cpu_ms_{n}": statistics.median(s.server_ms for s in got[n]) for n in specs},
                    "paired_cpu": statistics.median(
                        o.server_ms / s.server_ms for o, s in zip(got["own"], got["sdk"], strict=True)
                    ),
                    "paired_rate": statistics.median(
                        o.rate / s.rate for o, s in zip(got["own"], got["sdk"], strict=True)
                    ),
                }
                rows.append(row)
                print(
                    f"{tool:<20} {'seq' if width == 1 else f'{width} in flight':<12} "
                    f"calls/s own {row['rate_own']:7.1f} sdk {row['rate_sdk']:7.1f} (paired {row['paired_rate']:.2f})  "
                    f"server CPU ms own {row['cpu_ms_own']:.3f} sdk {row['cpu_ms_sdk']:.3f} "
                    f"(paired {row['paired_cpu']:.2f})",
                    flush=True,
                )
    return rows


async def run(rounds: int, seconds: float, warmup: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-http-modern-") as tmp:
        base = Path(tmp)
        RESULTS.mkdir(parents=True, exist_ok=True)
        with NatsServer(base / "nats").start() as nats:
            specs = {
                "own": Spec("own", "nats-mcp"),
                "sdk": Spec("sdk", "nats-mcp", env=OFF),
            }
            try:
                for spec in specs.values():
                    launch(spec, base, nats.url)
                key = await asyncio.to_thread(create_api_key, base, nats.url)
                for spec in specs.values():
                    spec.token = key
                await wait_listening(list(specs.values()))
                return await measure(specs, rounds, seconds, warmup)
            except BaseException:
                log_tails(list(specs.values()))
                raise
            finally:
                stop_servers(list(specs.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    opts = parser.parse_args()
    rounds, seconds, warmup = (4, 0.5, 20) if opts.quick else (10, 1.5, 100)
    started = time.perf_counter()
    try:
        rows = asyncio.run(run(rounds, seconds, warmup))
    except BenchError as exc:
        sys.exit(f"bench/http_modern.py: {exc}")
    out = RESULTS / "http_modern.json"
    out.write_text(json.dumps({"rounds": rounds, "sample_s": seconds, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out} after {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
