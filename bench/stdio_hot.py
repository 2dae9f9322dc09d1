"""Benchmark boundary of the stdio hot path: per-call cost of the busiest tools next to the SDK echo floor.

    .venv/bin/python bench/stdio_hot.py [--quick] [--profile] [--baseline-src DIR] [--only TOOL ...]

One real nats-server; the SDK echo (bench/echo_server.py) and ``nats-mcp serve`` over stdio, each driven by the
SDK's Python client, sampled alternately run by run. For each of ``warp_handle_get``, ``warp_channels_send``,
``warp_work_broadcast``, ``warp_work_claim`` and ``warp_channels_read`` (limit 50): sequential calls/s, the ratio
to the echo in the same run, the server process's CPU per call (user+system from /proc, so the client's own
cost is not in it) and the client's (this process: what reading the reply costs). ``--baseline-src DIR`` also runs
the ``nats-mcp serve`` of another source tree (DIR/src first on PYTHONPATH, e.g. ``git archive main src | tar -x -C
DIR``) in the same run, as the "before" of a change. ``--profile`` runs ``nats-mcp serve`` and the echo under
cProfile in CPU time (switched on around the measured loops only, as bench/stdio_tools.py does) and prints the top
functions by own time (cProfile inflates code that makes many small calls: read shares with care); ``--py-spy``
instead samples the unprofiled server with py-spy (``scripts/bootstrap bench``) over one more loop of each measured
tool and prints its innermost frames and its samples by area (bench/grpc_profile.py's reading), the figures that
hold without a profiler's overhead. Writes bench/results/stdio_hot.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import pstats
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from grpc_profile import report_samples, sampled  # noqa: E402
from mcp import Client  # noqa: E402
from stdio_tools import (  # noqa: E402
    ECHO_SERVER,
    MESSAGE,
    NAMESPACE,
    PROFILED_SERVER,
    RESULTS,
    SEND_CHANNEL,
    Context,
    Plan,
    call,
    nats_mcp_command,
    nats_ready,
    repeat,
    session,
    write_project_config,
)
from tests.support.natsserver import NatsServer, wait_for  # noqa: E402

CAPABILITY = "bench"
CPU_PROFILED = PROFILED_SERVER.replace("cProfile.Profile()", "cProfile.Profile(__import__('time').process_time)")
"""The profiled server of bench/stdio_tools.py, timed in CPU time: on a shared machine wall time in a profile is
mostly the scheduler (a pipe write that wakes the client shows as a millisecond's ``posix.write``)."""
TICKS = os.sysconf("SC_CLK_TCK")
TOP = 30


def children() -> set[int]:
    """Pids of this process's direct children (the stdio servers the SDK client spawned)."""
    me, out = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                out.add(int(entry))
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


Call = Callable[[], Awaitable[object]]


async def measure(fn: Call, n: int, pid: int) -> tuple[float, float, float]:
    """(calls/s, server CPU ms per call, client CPU ms per call) of ``n`` sequential calls.

    The client is this process (the SDK client and nothing else runs here while a loop runs): its CPU is what a
    reply costs to read (parsing, the result model, validating structuredContent against the output schema).
    """
    cpu0, mine0, t0 = cpu_s(pid), time.process_time(), time.perf_counter()
    for _ in range(n):
        await fn()
    elapsed, cpu, mine = time.perf_counter() - t0, cpu_s(pid) - cpu0, time.process_time() - mine0
    return n / elapsed, cpu * 1e3 / n, mine * 1e3 / n


def tool_loops(serve: Client, pid: int, tag: str) -> dict[str, tuple[Call, int]]:
    """The measured calls of one ``nats-mcp serve`` (its own agent, work queue and channel)."""
    n = 0

    async def handle_get() -> object:
        return await call(serve, "warp_handle_get", {})

    async def send() -> object:
        return await call(serve, "warp_channels_send", {"channel": SEND_CHANNEL, "message": MESSAGE})

    async def broadcast() -> object:
        nonlocal n
        n += 1
        args = {"taskId": f"t{n}", "description": MESSAGE, "requiredCapability": CAPABILITY}
        return await call(serve, "warp_work_broadcast", args)

    async def claim() -> object:
        got = await call(serve, "warp_work_claim", {"capability": CAPABILITY, "timeout": 0})
        if got.get("workItem") is None:
            raise RuntimeError("warp_work_claim found no item: the broadcasts did not land")
        return got

    async def read() -> object:
        return await call(serve, "warp_channels_read", {"channel": SEND_CHANNEL, "limit": 50})

    loops = {"handle_get": handle_get, "channels_send": send, "work_broadcast": broadcast, "work_claim": claim}
    loops["channels_read"] = read
    return {f"{name}{tag}": (fn, pid) for name, fn in loops.items()}


async def run(
    plan: Plan, profile: bool, baseline_src: Path | None, only: list[str], py_spy: Path | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-hot-") as tmp:
        base = Path(tmp)
        project = base / "project"
        project.mkdir()
        write_project_config(project)
        command = nats_mcp_command()
        prof_out, echo_prof = RESULTS / "stdio_hot.prof", RESULTS / "stdio_hot_echo.prof"
        argv = [sys.executable, "-c", CPU_PROFILED, str(prof_out), str(base / "pid"), *command.python_target]
        echo_argv = [sys.executable, "-c", CPU_PROFILED, str(echo_prof), str(base / "echo.pid"), str(ECHO_SERVER)]
        if not profile:
            argv, echo_argv = command.argv, [sys.executable, str(ECHO_SERVER)]
        ctx = Context(plan, command, base, project, "", {})
        with NatsServer(base / "nats").start() as server:
            ctx.url = server.url
            async with contextlib.AsyncExitStack() as stack:

                async def start(name: str, argv: list[str], namespace: str, **extra: str) -> tuple[Client, int]:
                    before = children()
                    env = ctx.env(namespace) | extra
                    errlog = stack.enter_context((base / f"{name}.log").open("w"))
                    client = await stack.enter_async_context(session(argv, env, project, errlog))
                    (pid,) = children() - before
                    if name != "echo":
                        await wait_for(lambda: nats_ready(client), 30, message=f"{name}: NATS never became available")
                        await call(client, "warp_handle_set", {"handle": f"bench-{name}"})
                        agent = {"agentType": "bench", "capabilities": [CAPABILITY]}
                        await call(client, "warp_registry_register", agent)
                    return client, pid

                echo, echo_pid = await start("echo", echo_argv, NAMESPACE)

                async def echo_call() -> object:
                    return await call(echo, "echo", {"text": MESSAGE})

                loops: dict[str, tuple[Call, int]] = {"echo": (echo_call, echo_pid)}
                loops |= tool_loops(*await start("serve", argv, NAMESPACE), "")
                if baseline_src is not None:  # the same server from another source tree, in its own namespace
                    started = await start("base", command.argv, "bench-base", PYTHONPATH=str(baseline_src / "src"))
                    loops |= tool_loops(*started, " (base)")
                every = dict(loops)
                if only:  # the echo stays (every ratio is of it); claims take what broadcasts leave, so both go
                    wanted = {*only, "work_broadcast"} if "work_claim" in only else set(only)
                    loops = {k: v for k, v in loops.items() if k == "echo" or k.split(" ")[0] in wanted}
                for name, (fn, _pid) in loops.items():
                    if name.startswith("work_claim"):
                        await repeat(every[name.replace("claim", "broadcast")][0], plan.warmup)  # what claim takes
                    await repeat(fn, plan.warmup)
                if profile:
                    profiled = [int((base / name).read_text()) for name in ("pid", "echo.pid")]
                    for each in profiled:
                        os.kill(each, signal.SIGUSR1)
                rates: dict[str, list[float]] = {name: [] for name in loops}
                cpus: dict[str, list[float]] = {name: [] for name in loops}
                clients: dict[str, list[float]] = {name: [] for name in loops}
                for _ in range(plan.runs):
                    for name, (fn, pid) in loops.items():
                        rate, cpu, client = await measure(fn, plan.calls, pid)
                        rates[name].append(rate)
                        cpus[name].append(cpu)
                        clients[name].append(client)
                if profile:
                    for each in profiled:
                        os.kill(each, signal.SIGUSR2)
                    for fn, _pid in loops.values():  # answered after the profiles are written
                        await fn()
                if py_spy is not None:
                    for name, (fn, pid) in loops.items():
                        if name == "echo" or name.endswith("(base)"):
                            continue
                        if name.startswith("work_claim"):
                            await repeat(every[name.replace("claim", "broadcast")][0], plan.calls)
                        out = RESULTS / f"stdio_hot_{name}.spy.txt"
                        rate = await sampled(py_spy, pid, fn, plan.calls, out)
                        print(f"\n--- py-spy: {name} ---")
                        report_samples(out, plan.calls, rate, TOP)
    rows = {}
    echo_rate, echo_cpu = statistics.median(rates["echo"]), statistics.median(cpus["echo"])
    print(f"\n{'tool':<23} {'calls/s':>8} {'x echo':>7} {'server CPU ms':>14} {'x echo':>7} {'client CPU ms':>14}")
    for name in loops:
        rate, cpu, client = (statistics.median(x[name]) for x in (rates, cpus, clients))
        rows[name] = {"calls_per_s": rate, "ratio_to_echo": rate / echo_rate, "server_cpu_ms": cpu}
        rows[name]["client_cpu_ms"] = client
        print(f"{name:<23} {rate:8.0f} {rate / echo_rate:7.2f} {cpu:14.3f} {cpu / echo_cpu:7.2f} {client:14.3f}")
    if baseline_src is not None:  # each run measured both trees back to back: the ratio of each run's pair
        print(f"\n{'paired, after/before':<23} {'calls/s':>8} {'server CPU':>11}  (median of the per-run ratios)")
        for name in loops:
            if (before := f"{name} (base)") in loops:
                rate_ratio = statistics.median(a / b for a, b in zip(rates[name], rates[before], strict=True))
                cpu_ratio = statistics.median(a / b for a, b in zip(cpus[name], cpus[before], strict=True) if b > 0)
                rows[name] |= {"paired_rate_vs_base": rate_ratio, "paired_cpu_vs_base": cpu_ratio}
                print(f"{name:<23} {rate_ratio:8.2f} {cpu_ratio:11.2f}")
    out: dict[str, Any] = {"plan": plan.__dict__, "rows": rows}
    if profile:
        for name, path in (("nats-mcp serve", prof_out), ("SDK echo", echo_prof)):
            print(f"--- {name}: top functions by own CPU time ---")
            pstats.Stats(str(path)).sort_stats("tottime").print_stats(TOP)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repetitions")
    parser.add_argument("--profile", action="store_true", help="run the server under cProfile and print its top")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="a checkout (e.g. `git archive main | tar -x -C DIR`) whose src/ is measured too, as the 'before'",
    )
    parser.add_argument("--py-spy", action="store_true", help="sample the unprofiled server with py-spy (bench extra)")
    parser.add_argument("--calls", type=int, help="calls per measured loop (and per py-spy loop)")
    parser.add_argument("--only", nargs="+", default=[], metavar="TOOL", help="measure only these (e.g. handle_get)")
    args = parser.parse_args()
    plan = Plan(runs=3, calls=150, samples=0, warmup=20, profile_calls=0) if args.quick else Plan(7, 400, 0, 50, 0)
    if args.calls:
        plan = dataclasses.replace(plan, calls=args.calls)
    baseline = args.baseline_src.resolve() if args.baseline_src else None
    spy = None
    if args.py_spy:
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            parser.error(f"--py-spy needs {spy}: run scripts/bootstrap bench")
    result = asyncio.run(run(plan, args.profile, baseline, args.only, spy))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stdio_hot.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
