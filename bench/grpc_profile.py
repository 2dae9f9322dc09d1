"""Benchmark boundary of a profile: where ``nats-mcp serve --transport grpc`` spends a call's server time.

    .venv/bin/python bench/grpc_profile.py [--calls N] [--cell b|b2|b3]

One real nats-server, the gRPC server with mutual TLS (as in bench/grpc_tools.py) run by this interpreter under a
cProfile that SIGUSR1 starts and SIGUSR2 stops (bench/stdio_tools.py's wrapper), so the profile holds the measured
sequential loop only. Prints the top 15 by own time and by cumulative time, and the own time by area (which part of
the server, which library); writes bench/results/grpc_<cell>.prof.

grpc-python's server is Cython, which cProfile does not see: its time shows as the own time of the Python frames
that call it — ``Context.run`` (the completion callbacks the event loop runs) and the coroutines that await
``context.write`` (``exchange``, ``pump_out``) — counted here as "grpc core + Cython (hidden)".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from grpc_tools import (  # noqa: E402
    LIST_TOOL,
    POLICY,
    RESULTS,
    START_TIMEOUT_S,
    grpc_session,
    make_certs,
    raw_call_caller,
    start,
    stop,
    typed_caller,
    wait_port,
)
from http_tools import UNLIMITED, BenchError, caller  # noqa: E402
from stdio_tools import PROFILED_SERVER  # noqa: E402
from tests.support.env import isolated_env  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402


async def profile(cell: str, calls: int, top: int, py_spy: Path | None = None) -> None:
    out = RESULTS / f"grpc_{cell.replace('/', '_')}.prof"
    with tempfile.TemporaryDirectory(prefix="bench-grpc-prof-") as tmp:
        base = Path(tmp)
        with NatsServer(base / "nats").start() as nats:
            certs = await asyncio.to_thread(make_certs, base)
            policy = base / "policy.yaml"
            policy.write_text(POLICY)
            project = base / "project"
            project.mkdir()
            env = isolated_env(
                project,
                NATS_URL=nats.url,
                NATS_MCP_NAMESPACE="bench",
                NATS_MCP_GRPC_PORT_FILE=str(base / "grpc.port"),
                NATS_MCP_SECURITY_POLICY_FILE=str(policy),
                **UNLIMITED,
            )
            pid_file = base / "profiled.pid"
            argv = [sys.executable, "-c", PROFILED_SERVER, str(out), str(pid_file), "-m", "nats_mcp.cli.main"]
            argv += ["serve", "--transport", "grpc", "--port", "0", "--tls-cert", str(certs / "server.pem")]
            argv += ["--tls-key", str(certs / "server-key.pem"), "--client-ca", str(certs / "ca.pem")]
            served = start("grpc", argv, env, base, base / "grpc.port")
            try:
                await wait_port(served)
                async with contextlib.AsyncExitStack() as stack:
                    if cell == "b":
                        client = await stack.enter_async_context(grpc_session(served.port, certs))
                        call = caller(client, LIST_TOOL, {}, "grpc")
                    elif cell == "b2":
                        call = await stack.enter_async_context(raw_call_caller(served.port, certs))
                    else:
                        call = await stack.enter_async_context(typed_caller(served.port, certs))
                    for _ in range(200):
                        await call()
                    pid = int(pid_file.read_text())
                    if py_spy is not None:
                        spied = RESULTS / f"grpc_{cell}.pyspy.txt"
                        rate = await sampled(py_spy, pid, call, calls, spied)
                        await asyncio.to_thread(report_samples, spied, calls, rate, top)
                        return
                    out.unlink(missing_ok=True)
                    os.kill(pid, signal.SIGUSR1)
                    await call()  # answered after the handler enabled the profiler (it runs in the loop's thread)
                    started = time.perf_counter()
                    for _ in range(calls):
                        await call()
                    rate = calls / (time.perf_counter() - started)
                    os.kill(pid, signal.SIGUSR2)
                    await call()
                    deadline = time.monotonic() + START_TIMEOUT_S
                    while not out.exists():
                        if time.monotonic() > deadline:
                            raise BenchError(f"the profiled server wrote no {out}")
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.2)  # dump_stats writes the file in one go; let it finish
            finally:
                stop([served.process])
    print(f"{cell}: {calls} calls under cProfile at {rate:.0f} calls/s (read shares, not absolutes)")
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(str(out), stream=text).strip_dirs().sort_stats(key).print_stats(top)
        print(text.getvalue())
    shares = areas(out)
    busy = sum(t for a, t in shares if not a.startswith("idle"))
    print(f"own time by area ({busy:.2f} s busy = {1e3 * busy / calls:.2f} ms a call under the profiler):")
    for area, seconds in shares:
        share = "" if area.startswith("idle") else f"{100 * seconds / busy:5.1f} %"
        print(f"  {area:<48} {seconds:7.2f} s {share}")


AREAS = (
    ("/nats_mcp/security/audit/", "nats_mcp security/audit"),
    ("/nats_mcp/security/", "nats_mcp security (guard, authn, policy)"),
    ("/nats_mcp/transports/grpc/", "nats_mcp transports/grpc"),
    ("/nats_mcp/api/", "nats_mcp api (tools, dispatch)"),
    ("/nats_mcp/observe/", "nats_mcp observe (metrics, anomaly)"),
    ("/nats_mcp/", "nats_mcp other"),
    ("/mcp_types/", "MCP SDK"),
    ("/mcp/", "MCP SDK"),
    ("/opentelemetry/", "opentelemetry (the SDK's span middleware)"),
    ("/pydantic", "pydantic"),
    ("/nats/", "nats-py (audit publishes, NATS traffic)"),
    ("/anyio/", "event loop (asyncio, anyio)"),
    ("/asyncio/", "event loop (asyncio, anyio)"),
    ("/grpc/", "grpc Python layer"),
)
HIDDEN = "grpc core + Cython (hidden)"
HIDING = ("_contextvars.Context", "(exchange)", "(pump_out)")


def area_of(file: str, name: str) -> str:
    if file == "~":
        if "epoll" in name:
            return "idle (epoll)"
        if any(h in name for h in HIDING):
            return HIDDEN
        if "pydantic_core" in name:
            return "pydantic"
        if "socket" in name:
            return "socket sends (NATS)"
        return "builtins (json, hashing, ...)"
    if any(name == h.strip("()") for h in HIDING[1:]):
        return HIDDEN
    for needle, area in AREAS:
        if needle in file:
            return area
    return "other libraries" if "site-packages" in file else "stdlib (contextlib, copy, enum, ...)"


def areas(path: Path) -> list[tuple[str, float]]:
    raw: dict[tuple[str, int, str], Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for (file, _, name), (_, _, tottime, _, _) in raw.items():
        key = area_of(file, name)
        totals[key] = totals.get(key, 0.0) + tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


async def sampled(py_spy: Path, pid: int, call: Any, calls: int, out: Path) -> float:
    """The same loop sampled by py-spy (``--native``: grpc's C core and Cython frames too, no profiler overhead);
    calls/s."""
    hz = os.environ.get("BENCH_SPY_HZ", "200")  # more for a longer, finer sample (py-spy's own cost grows with it)
    argv = [str(py_spy), "record", "-p", str(pid), "-r", hz, "-f", "raw", "-o", str(out), "--native"]
    spy = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    await asyncio.sleep(1.0)  # py-spy attaches
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    rate = calls / (time.perf_counter() - started)
    spy.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(spy.communicate(), 60)
    if spy.returncode not in (0, -signal.SIGINT):
        print(f"py-spy: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
    return rate


def report_samples(out: Path, calls: int, rate: float, top: int) -> None:
    """The innermost frames with most samples, and the samples by area."""
    leaves: dict[str, int] = {}
    by_area: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        total += n
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + n
        area = area_of_sample(frames)
        by_area[area] = by_area.get(area, 0) + n
    print(f"{calls} calls at {rate:.0f} calls/s under py-spy (200 Hz, all threads); {total} samples; raw: {out}")
    print("innermost frames:")
    for frame, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * n / total:5.1f} %  {frame[:150]}")
    busy = total - by_area.get(IDLE, 0)
    print(f"by area (of the innermost frame that names one), of {busy} busy samples ({IDLE}: {total - busy}):")
    for area, n in sorted(by_area.items(), key=lambda kv: -kv[1]):
        if area != IDLE:
            print(f"  {100 * n / busy:5.1f} %  {area}")


SAMPLE_AREAS = (
    ("cygrpc", "grpc core + Cython"),
    ("libgrpc", "grpc core + Cython"),
    ("_ssl", "TLS (OpenSSL)"),
    ("libssl", "TLS (OpenSSL)"),
    ("libcrypto", "TLS (OpenSSL)"),
    ("boringssl", "TLS (OpenSSL)"),
    ("grpc/", "grpc Python layer"),
    ("nats_mcp/security/audit/", "nats_mcp security/audit"),
    ("nats_mcp/security/", "nats_mcp security (guard, authn, policy)"),
    ("nats_mcp/transports/grpc/", "nats_mcp transports/grpc"),
    ("nats_mcp/api/", "nats_mcp api (tools, dispatch)"),
    ("nats_mcp/observe/", "nats_mcp observe (metrics, anomaly)"),
    ("nats_mcp/", "nats_mcp other"),
    ("mcp_types/", "MCP SDK"),
    ("mcp/", "MCP SDK"),
    ("opentelemetry/", "opentelemetry (the SDK's span middleware)"),
    ("trace/", "opentelemetry (the SDK's span middleware)"),
    ("pydantic", "pydantic"),
    ("nats/", "nats-py (audit publishes, NATS traffic)"),
    ("prometheus_client/", "nats_mcp observe (metrics, anomaly)"),
    ("anyio/", "event loop (asyncio, anyio)"),
    ("asyncio/", "event loop (asyncio, anyio)"),
    ("_asynciomodule", "event loop (asyncio, anyio)"),
    ("selectors.py", "event loop (asyncio, anyio)"),
)


IDLE = "idle (epoll_wait, futex waits)"
IDLE_LEAVES = ("epoll_wait", "epoll_pwait", "futex_wait", "__futex_abstimed_wait", "pthread_cond_timedwait")


def area_of_sample(frames: list[str]) -> str:
    """The area of the innermost frame that names one (``fn (path:line)``; native ``0x.. (library)``)."""
    if frames[-1].startswith(IDLE_LEAVES):
        return IDLE
    for frame in reversed(frames):
        where = frame.rpartition("(")[2]
        for needle, area in SAMPLE_AREAS:
            if needle in where:
                return area
    return "other: " + frames[-1][:80]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", choices=("b", "b2", "b3"), default="b2")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--py-spy", type=Path, help="a py-spy executable: sample the loop instead of cProfile")
    args = parser.parse_args()
    asyncio.run(profile(args.cell, args.calls, args.top, args.py_spy))


if __name__ == "__main__":
    main()
