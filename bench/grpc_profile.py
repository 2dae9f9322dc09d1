"""Benchmark boundary of a profile: where ``nats-mcp serve --transport grpc`` spends a call's server time.

    .venv/bin/python bench/grpc_profile.py [--calls N] [--cell b|b2|b3]

One real nats-server, the gRPC server with mutual TLS (as in bench/grpc_tools.py) run by this interpreter under a
cProfile that SIGUSR1 starts and SIGUSR2 stops (bench/stdio_tools.py's wrapper), so the profile holds the measured
sequential loop only. Prints the top 15 by own time and by cumulative time; writes bench/results/grpc_<cell>.prof.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path

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


async def profile(cell: str, calls: int, top: int) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", choices=("b", "b2", "b3"), default="b2")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(profile(args.cell, args.calls, args.top))


if __name__ == "__main__":
    main()
