"""Benchmark boundary of the floor's profile: server CPU per call of ours and of the Python floor, and where it goes.

    .venv/bin/python bench/floor_profile.py [--calls N] [--no-spy]

Not in CI. One nats-server; ``nats-mcp serve`` and bench/floor_server.py in both modes (``py floor``: ``--nats
publish``; ``bare``: ``--nats none``), started as bench/peers.py starts them and driven by the SDK's Python client
over stdio. Per op (``handle_get``, ``channels_send``, ``work_broadcast``, ``work_claim``): N sequential calls of
each side in turn, each server's user and system CPU per call (/proc: system is the pipe and socket system calls
and epoll) and this client's CPU per call.

Then (py-spy, ``pip install py-spy``; ``--no-spy`` skips it), per op, a fresh ours and a fresh py floor each take N
more calls under ``py-spy record --gil`` (samples only while the process runs Python, holding the GIL: so neither
the idle wait nor the system calls, which release it; on this machine py-spy's idle detection keeps wall time in
``epoll``, a pipe write that wakes the client and a socket send otherwise). Each sample goes to the bucket of its
innermost frame: the event loop (asyncio, anyio, selectors), JSON, nats-py, the MCP SDK and mcp_types, pydantic,
our code (nats_mcp), the floor's own code, the rest. Writes bench/results/floor_profile.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from peers import RESULTS, TICKS, Servers, Side, ops_of, prepare  # noqa: E402
from stdio_tools import nats_ready  # noqa: E402
from tests.support.natsserver import NatsServer, wait_for  # noqa: E402

OPS = ("handle_get", "channels_send", "work_broadcast", "work_claim")
SIDES = ("ours", "floor", "bare")
WARMUP = 20
SPY_RATE = 1000
SPY_ATTACH_S = 1.0
"""py-spy prints nothing when it is attached: the calls start this long after it was started."""
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?):\d+\)$")
BUCKETS = (
    ("json/", "json"),
    ("asyncio/", "event loop"),
    ("anyio/", "event loop"),
    ("selectors.py", "event loop"),
    ("nats/", "nats-py"),
    ("nats_mcp/", "ours (nats_mcp)"),
    ("mcp/", "MCP SDK"),
    ("mcp_types/", "MCP SDK"),
    ("pydantic", "pydantic"),
    ("floor_server.py", "the floor's own code"),
)


def where(frame: str) -> str:
    """The bucket of a sample from its innermost frame, as py-spy's raw format writes it: ``function (path:line)``."""
    match = FRAME.match(frame.strip())
    path = match.group("path") if match else ""
    for prefix, bucket in BUCKETS:
        if path.startswith(prefix) or (prefix == "pydantic" and prefix in path):
            return bucket
    return "other"


def buckets(raw: str) -> dict[str, int]:
    """Samples per bucket of a ``py-spy record --format raw`` output (one stack per line, then its count)."""
    out: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            bucket = where(stack.split(";")[-1])
            out[bucket] = out.get(bucket, 0) + int(count)
    return out


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


async def repeat(fn: Callable[[], Awaitable[object]], n: int) -> None:
    for _ in range(n):
        await fn()


async def start(servers: Servers, name: str) -> Side:
    side = await servers.start(name)
    if name == "ours":
        await wait_for(lambda: nats_ready(side.client), 30, message="ours: NATS never became available")
        await prepare(side)
    else:
        side.handle = "bench-floor"
    return side


async def cpu_per_call(servers: Servers, calls: int, result: dict[str, Any]) -> None:
    sides = {name: await start(servers, name) for name in SIDES}
    counter = [0]
    table = {name: ops_of(side, counter) for name, side in sides.items()}
    for op in OPS:
        for name, side in sides.items():
            fn = table[name][op]
            await repeat(fn, WARMUP if op != "work_claim" else 0)  # claims take what the broadcasts left
            (user0, sys0), client0 = cpu_split(side.pid), time.process_time()
            await repeat(fn, calls)
            (user1, sys1), client1 = cpu_split(side.pid), time.process_time()
            got = {"user": (user1 - user0) * 1e3 / calls, "system": (sys1 - sys0) * 1e3 / calls}
            result["cpu_ms"].setdefault(op, {})[name] = got | {"client": (client1 - client0) * 1e3 / calls}
        print(f"{op}: " + ", ".join(f"{k} {sum(list(v.values())[:2]):.3f}" for k, v in result["cpu_ms"][op].items()))


async def spied(base: Path, url: str, spy: str, calls: int, result: dict[str, Any]) -> None:
    for op in OPS:
        for name in ("ours", "floor"):
            out = base / f"{name}-{op}.txt"
            async with AsyncExitStack() as stack:
                side = await start(Servers(base, url, stack), name)
                counter = [0]
                ops = ops_of(side, counter)
                if op == "work_claim":  # the items the claims take, before the recording
                    await repeat(ops["work_broadcast"], calls + WARMUP)
                await repeat(ops[op], WARMUP)
                argv = [spy, "record", "--gil", "--rate", str(SPY_RATE), "--format", "raw", "-o", str(out)]
                recorder = await asyncio.create_subprocess_exec(
                    *argv, "--pid", str(side.pid), stdout=subprocess.DEVNULL
                )
                await asyncio.sleep(SPY_ATTACH_S)
                await repeat(ops[op], calls)
            await asyncio.wait_for(recorder.wait(), 60)  # it writes its output when the server has exited
            got = buckets(out.read_text()) if out.exists() else {}
            result["spy"].setdefault(op, {})[name] = got
            print(f"py-spy {name} {op}: {sum(got.values())} samples", flush=True)


async def run(calls: int, spy: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"calls": calls, "cpu_ms": {}, "spy": {}}
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        base = Path(tmp)
        with NatsServer(base / "nats").start() as server:
            async with AsyncExitStack() as stack:
                await cpu_per_call(Servers(base, server.url, stack), calls, result)
            if spy is not None:
                await spied(base, server.url, spy, calls, result)
    return result


def print_result(result: dict[str, Any]) -> None:
    print(f"\n{'server CPU ms per call (user+system)':<38}" + "".join(f"{s:>22}" for s in SIDES))
    for op, sides in result["cpu_ms"].items():
        cells = "".join(
            f"{v['user'] + v['system']:>8.3f} ({v['user']:.3f}+{v['system']:.3f})".rjust(22) for v in sides.values()
        )
        print(f"{op:<38}{cells}")
    print("(client CPU ms per call, ours / py floor / bare: ", end="")
    print(
        "; ".join(f"{op} " + "/".join(f"{v['client']:.3f}" for v in s.values()) for op, s in result["cpu_ms"].items())
    )
    print(")")
    if not result["spy"]:
        return
    names: list[str] = []
    for sides in result["spy"].values():
        for got in sides.values():
            names += [n for n in got if n not in names]
    print("\npy-spy --gil: share of each process's Python samples by innermost frame (ours | py floor)")
    print(f"{'':<22}" + "".join(f"{op:>20}" for op in result["spy"]))
    for name in names:
        shares: list[str] = []
        for sides in result["spy"].values():
            each = [100 * got.get(name, 0) / max(1, sum(got.values())) for got in sides.values()]
            shares.append(" | ".join(f"{v:4.0f}%" for v in each).rjust(20))
        print(f"{name:<22}" + "".join(shares))
    counts = [" | ".join(f"{sum(got.values()):5d}" for got in sides.values()) for sides in result["spy"].values()]
    print(f"{'(samples)':<22}" + "".join(c.rjust(20) for c in counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1000, help="sequential calls per side and op")
    parser.add_argument("--no-spy", action="store_true", help="CPU per call only, no py-spy recordings")
    args = parser.parse_args()
    spy = (
        None if args.no_spy else shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    )
    if spy is None and not args.no_spy:
        sys.exit("bench/floor_profile.py: py-spy is not installed (pip install py-spy), or pass --no-spy")
    result = asyncio.run(run(args.calls, spy))
    print_result(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "floor_profile.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
