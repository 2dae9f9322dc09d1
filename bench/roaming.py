"""Benchmark boundary of MCP sessions in NATS: the cost of a call when any process serves any request of a session.

    .venv/bin/python bench/roaming.py [--quick] [--baseline-exe PATH]

One run, one real nats-server, `nats-mcp serve --transport http` processes with one API key (rate limits raised),
one SDK client per cell holding a 2025-11-25 session (``mode="legacy"``), calling ``warp_channels_send`` back to
back. Cells, sampled alternately (the order rotated each round), medians of the rounds:

- ``direct``: the client talks to one process (the session stays where it was opened);
- ``proxy xN`` (N = 1, 2, 3): the same through a per-request round-robin proxy (tests/support/lbproxy.py) in front
  of N processes, so with N > 1 consecutive requests of the session land on different processes;
- ``baseline`` (with ``--baseline-exe``, e.g. the ``nats-mcp`` of a checkout from before sessions moved to NATS):
  the client talks to one process of that build directly — today's per-call cost against the old one.

Server CPU per call is the CPU all serve processes of the cell spent (every thread) over the calls made, less what
each spends when idle (measured once, before the rounds); it must not grow with the number of processes. The proxy
runs in this process: its cost is in the client column, not the server's.
Prints a table of calls/s, server CPU per call and their ratios to ``direct``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import http_tools
from http_tools import SEND_CHANNEL, SEND_TOOL, Spec, caller, cpu_s, session
from mcp import Client
from tests.support.lbproxy import round_robin
from tests.support.natsserver import NatsServer

RESULTS = Path(__file__).resolve().parent / "results"
ROUNDS = {"quick": 3, "full": 9}
SAMPLE_S = {"quick": 0.5, "full": 2.0}
WARMUP = 20


@dataclass
class Cell:
    name: str
    servers: list[Spec]
    proxied: bool
    rates: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    nats_msgs: list[float] = field(default_factory=list)
    """Messages nats-server took in per call (publishes, requests and their replies' sends: its ``in_msgs``)."""
    client_ms: list[float] = field(default_factory=list)


@contextlib.asynccontextmanager
async def client_of(cell: Cell) -> AsyncIterator[Client]:
    if not cell.proxied:
        async with session(cell.servers[0], "legacy") as client:
            yield client
        return
    async with round_robin([f"http://127.0.0.1:{s.port}" for s in cell.servers]) as (base, proxy):
        front = Spec(cell.name, "nats-mcp", token=cell.servers[0].token, port=int(base.rsplit(":", 1)[1]))
        try:
            async with session(front, "legacy") as client:
                yield client
        finally:
            if proxy.failed or proxy.refusals:
                print(f"{cell.name}: unanswered {proxy.failed}, refused {proxy.refusals[:20]}", file=sys.stderr)


async def measure(cells: list[Cell], rounds: int, seconds: float, nats: NatsServer) -> None:
    async with contextlib.AsyncExitStack() as stack:
        calls = {}
        for cell in cells:
            client = await stack.enter_async_context(client_of(cell))
            await http_tools.set_handle(client, cell.servers[0])
            call = caller(client, SEND_TOOL, {"channel": SEND_CHANNEL, "message": "roaming bench"}, cell.name)
            for _ in range(WARMUP):
                await call()
            calls[cell.name] = call
        idle = await idle_rates([s for cell in cells for s in cell.servers])
        for turn in range(rounds):
            for cell in cells[turn % len(cells) :] + cells[: turn % len(cells)]:
                pids = [s.process.pid for s in cell.servers if s.process is not None]
                server0 = sum(cpu_s(pid) for pid in pids)
                client0 = sum(sys_cpu())
                msgs0 = nats.monitor("varz")["in_msgs"]
                wall0 = time.perf_counter()
                n = await http_tools.sequential(calls[cell.name], seconds)
                wall = time.perf_counter() - wall0
                client = sum(sys_cpu()) - client0
                # what the processes spend anyway (timers, watches, heartbeats) is not the calls' cost
                server = sum(cpu_s(pid) for pid in pids) - server0 - wall * sum(idle.get(pid, 0.0) for pid in pids)
                cell.nats_msgs.append((nats.monitor("varz")["in_msgs"] - msgs0) / n)
                cell.rates.append(n / wall)
                cell.server_ms.append(1e3 * server / n)
                cell.client_ms.append(1e3 * client / n)


async def idle_rates(servers: list[Spec], seconds: float = 3.0) -> dict[int, float]:
    """CPU seconds per second each server process spends with no call in flight (measured once, all at once)."""
    pids = {s.process.pid for s in servers if s.process is not None}
    before = {pid: cpu_s(pid) for pid in pids}
    await asyncio.sleep(seconds)  # the measuring window itself
    return {pid: (cpu_s(pid) - before[pid]) / seconds for pid in pids}


def sys_cpu() -> tuple[float, float]:
    times = os.times()
    return times.user, times.system


def table(cells: list[Cell]) -> None:
    """Print the medians and ratios to ``direct``; write them to bench/results/roaming.json (bench/run_all.py)."""
    base = cells[0]
    rows = []
    rate0, cpu0 = statistics.median(base.rates), statistics.median(base.server_ms)
    print(
        f"{'cell':<24}{'calls/s':>9}{'server ms/call':>16}{'client ms/call':>16}{'NATS msgs/call':>16}"
        f"{'rate x':>8}{'server cpu x':>14}"
    )
    for cell in cells:
        rate, cpu, client, msgs = (
            statistics.median(v) for v in (cell.rates, cell.server_ms, cell.client_ms, cell.nats_msgs)
        )
        ratios = f"{rate / rate0:>8.2f}{cpu / cpu0:>14.2f}"
        print(f"{cell.name:<24}{rate:>9.1f}{cpu:>16.3f}{client:>16.3f}{msgs:>16.1f}{ratios}")
        rows.append(
            {
                "name": f"{cell.name}: server CPU per call vs direct",
                "calls_per_s": round(rate, 1),
                "server_ms_per_call": round(cpu, 3),
                "client_ms_per_call": round(client, 3),
                "nats_msgs_per_call": round(msgs, 1),
                "ratio": round(cpu / cpu0, 3),
            }
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "roaming.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--baseline-exe", type=Path, help="a nats-mcp executable of another build, sampled direct")
    args = parser.parse_args()
    form = "quick" if args.quick else "full"
    with tempfile.TemporaryDirectory(prefix="roaming-bench-") as tmp:
        base = Path(tmp)
        specs: list[Spec] = []
        with NatsServer(base / "nats").start() as nats:
            try:
                token = http_tools.create_api_key(base, nats.url)
                procs = [Spec(f"serve-{i}", "nats-mcp", token=token) for i in range(1, 4)]
                specs = list(procs)
                if args.baseline_exe is not None:
                    specs.append(Spec("baseline", "nats-mcp", token=token))
                for spec in specs:
                    http_tools.launch(spec, base, nats.url)
                    if spec.name == "baseline" and spec.process is not None:  # the same command from the other build
                        spec.process.kill()
                        spec.process.wait()
                        relaunch(spec, base, nats.url, args.baseline_exe)
                await http_tools.wait_listening(specs)
                cells = [Cell("direct", procs[:1], False)]
                cells += [Cell(f"proxy x{n}", procs[:n], True) for n in (1, 2, 3)]
                if args.baseline_exe is not None:
                    cells.append(Cell("baseline direct", specs[-1:], False))
                await measure(cells, ROUNDS[form], SAMPLE_S[form], nats)
                table(cells)
            finally:
                http_tools.stop_servers(specs)


def relaunch(spec: Spec, base: Path, nats_url: str, exe: Path) -> None:
    """Start ``spec`` again with another build's executable (same arguments and environment)."""
    assert spec.port_file is not None and spec.log is not None
    argv, env = http_tools.server_argv(spec, base, spec.port_file)
    env["NATS_URL"] = nats_url
    spec.port_file.unlink(missing_ok=True)
    with spec.log.open("wb") as log:
        spec.process = subprocess.Popen([str(exe), *argv[1:]], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base)


if __name__ == "__main__":
    asyncio.run(main())
