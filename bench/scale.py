"""Benchmark boundary of scale: how latency, throughput and server memory grow with history, registered agents,
queue depth and concurrent sessions — each curve against its own smallest point, measured in the same run.

    .venv/bin/python bench/scale.py [--quick]        (last of bench/run_all.py; make bench / make bench-quick)

Medians with min..max, because these machines are shared and noisy: a curve's points are sampled in turn
(round-robin), so drift on the machine falls on all of them alike, and each point is judged by its ratio to the
curve's first point (median / median), never by absolute speed.

1. ``warp_channels_read`` (limit 50, no cursor: the newest page) latency vs channel history: 1k, 3k, 10k, 30k and
   100k messages (quick: 1k, 10k), through one real `nats-mcp serve` over stdio driven by the SDK client; history
   filled with ``tests.support.history.fill_channel``. Target <= 1.2x the 1k point at every length.
2. ``warp_registry_discover`` (no arguments: the first page at the default limit, 20) latency vs registered agents:
   10, 100, 1,000 and 5,000 (quick: 10, 1,000), one stdio server per namespace, the agents registered through
   ``RegistryService`` (``stdio_tools.register_agents``). At 10 agents the page holds 10 entries, at the others 20.
   Target <= 2x the 10-agent point at every size (the issue's is 1,000; 5,000 is held to the same).
3. claim latency vs pending items: 1, 100, 1,000, 10,000 and 50,000 (quick: 1, 1,000), through ``WorkService`` in
   this process and through ``warp_work_claim`` over stdio. Only the claim is timed: the item is completed and a
   replacement of the same priority broadcast outside the timed part (as bench/work.py), so the depth stays put.
   Queues are filled by ``WorkService.broadcast``, 100 at a time, priorities 1..10 (the 1-item queue: one item at
   priority 5). The default ``work.max_bytes`` (128 MiB) holds the ~61k items (~25 MB). Target <= 1.3x the 1-item
   point.
4. concurrent agents: 1, 10, 50, 100 and 200 (quick: 1, 10, 50) over streamable HTTP (`serve --transport http`, one
   API key, each agent its own SDK session and ``x-nats-mcp-agent``) and over gRPC (`serve --transport grpc`, mutual
   TLS with the ``nats-mcp certs init`` certificates, each agent its own channel, ``Session`` stream and agent name).
   Every agent calls ``warp_channels_send`` to one shared channel back to back for a fixed window (a write: the
   guard, the audit record and a JetStream publish + ack on every call). Aggregate calls/s, p50/p95 per-call
   latency, and the CPU the server and this client used; ratio = calls/s / calls/s at 1 agent (no target). All
   agents run in this one Python process, so the client's CPU is reported beside the server's. The servers run
   with the rate limits raised (``http_tools.UNLIMITED``: 1,000,000 calls/s per principal and per address).
5. server memory (VmRSS of the process and its children, from /proc): the HTTP gateway idle (NATS connected, no
   session), then with 1,000 agents registered in its namespace (one probe session open), then with 100 sessions
   more open (each made one call; quick: 50), then after the 200-agent point; the gRPC server idle, with 100
   sessions, after its 200-agent point; and the stdio servers of curve 2. Ratio vs the same server idle.

One real nats-server on an OS-assigned port; every server process gets a private HOME and project directory and is
stopped on the way out, failure included. Prints a table; writes bench/results/scale.json (rows that run_all.py
reads, the curves' points, the date and the machine) and draws bench/results/scale.png (bench/scale_plot.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import http_tools  # noqa: E402
import scale_gateways  # noqa: E402
import scale_plot  # noqa: E402
import stdio_tools  # noqa: E402
import work  # noqa: E402
from mcp import Client  # noqa: E402
from run_all import machine  # noqa: E402
from scale_procs import Memory, child_pids  # noqa: E402
from stdio_tools import call, register_agents  # noqa: E402
from tests.support.env import isolated_env, nats_mcp_exe  # noqa: E402
from tests.support.history import fill_channel  # noqa: E402
from tests.support.natsserver import NatsServer, wait_for  # noqa: E402

from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.bus.layout import Layout  # noqa: E402
from nats_mcp.config.coordination import DEFAULT_CHANNELS  # noqa: E402
from nats_mcp.config.loader import load_settings  # noqa: E402
from nats_mcp.config.settings import Settings  # noqa: E402
from nats_mcp.coord.work.service import WorkService  # noqa: E402

RESULTS = BENCH / "results"
READ_LIMIT = stdio_tools.READ_LIMIT  # the page checked_reader reads
MESSAGE = "benchmark message: " + "x" * 80
WORK_DESCRIPTION = work.DESCRIPTION
FILL_BATCH = 100
REGISTER_S_PER_AGENT = 0.05
"""Deadline for registering agents: 30 s plus this per agent (about 10x what this machine needs)."""
BENCH_ERRORS: tuple[type[BaseException], ...] = (stdio_tools.BenchError, work.BenchError, http_tools.BenchError)


class BenchError(RuntimeError):
    """The harness could not measure (a server did not start, a call failed, a fill did not land)."""


BENCH_ERRORS += (BenchError,)


@dataclass(frozen=True)
class Plan:
    history: tuple[int, ...]
    """Curve 1: messages of channel history."""
    agents: tuple[int, ...]
    """Curve 2: registered agents."""
    depths: tuple[int, ...]
    """Curve 3: pending work items (WorkService)."""
    mcp_depths: tuple[int, ...]
    """Curve 3: the depths also measured through MCP over stdio."""
    concurrency: tuple[int, ...]
    """Curve 4: concurrent agents per transport."""
    samples: int
    """Latency samples per point of curves 1-3."""
    warmup: int
    """Untimed calls per point before sampling."""
    rounds: int
    """Curve 4: samples (windows) per point."""
    window_s: float
    """Curve 4: seconds of calls per sample."""
    memory_sessions: int
    """Sessions open for the memory figure."""


QUICK = Plan(
    history=(1_000, 10_000),
    agents=(10, 1_000),
    depths=(1, 1_000),
    mcp_depths=(1, 1_000),
    concurrency=(1, 10, 50),
    samples=40,
    warmup=10,
    rounds=1,
    window_s=1.5,
    memory_sessions=50,
)
FULL = Plan(
    history=(1_000, 3_000, 10_000, 30_000, 100_000),
    agents=(10, 100, 1_000, 5_000),
    depths=(1, 100, 1_000, 10_000, 50_000),
    mcp_depths=(1, 100, 1_000, 10_000, 50_000),
    concurrency=(1, 10, 50, 100, 200),
    samples=200,
    warmup=30,
    rounds=5,
    window_s=4.0,
    memory_sessions=100,
)


# ------------------------------------------------------------------------------------------------
# The run's context


@dataclass
class Run:
    plan: Plan
    base: Path
    project: Path
    url: str
    conn: NatsConnection | None = None
    logs: dict[str, Path] = field(default_factory=dict)
    memory: Memory = field(default_factory=Memory)
    pids: dict[str, int] = field(default_factory=dict)
    """Server processes by name, for a profiler (``py-spy dump --pid``) while the run goes on."""

    def env(self, namespace: str, **extra: str) -> dict[str, str]:
        return isolated_env(self.project, NATS_URL=self.url, NATS_MCP_NAMESPACE=namespace, **extra)

    def settings(self, namespace: str) -> Settings:
        return load_settings(environ=self.env(namespace)).settings

    @property
    def nats(self) -> NatsConnection:
        assert self.conn is not None
        return self.conn

    @contextlib.asynccontextmanager
    async def stdio(self, name: str, namespace: str) -> AsyncIterator[tuple[Client, int]]:
        """An SDK client session with a fresh `nats-mcp serve` over stdio, once its NATS side is up; and its pid."""
        log_path = self.base / f"{name}.log"
        self.logs[name] = log_path
        before = child_pids(os.getpid())
        with log_path.open("w") as errlog:
            argv = [nats_mcp_exe(), "serve"]
            async with stdio_tools.session(argv, self.env(namespace), self.project, errlog) as client:
                new = sorted(child_pids(os.getpid()) - before)
                if len(new) != 1:
                    raise BenchError(f"{name}: expected one new child process (the server), found {new}")
                self.pids[name] = new[0]
                await wait_for(lambda: stdio_tools.nats_ready(client), 30, message=f"{name}: NATS never came up")
                yield client, new[0]


def write_project_config(project: Path, history: tuple[int, ...]) -> None:
    """The default channels plus one channel per history length, large enough to keep it."""
    channels = [
        {
            "name": c.name,
            "description": c.description,
            "maxMessages": c.max_messages,
            "maxBytes": c.max_bytes,
            "maxAge": c.max_age,
        }
        for c in DEFAULT_CHANNELS
    ]
    for size in history:
        channels.append(
            {
                "name": history_channel(size),
                "description": f"benchmark history of {size} messages",
                "maxMessages": 2 * size,
                "maxBytes": 512 * 1024 * 1024,
                "maxAge": "24h",
            }
        )
    (project / ".mcp-config.json").write_text(json.dumps({"channels": channels}, indent=2))


def history_channel(size: int) -> str:
    return f"history-{size}"


# ------------------------------------------------------------------------------------------------
# Sampling


Fn = Callable[[], Awaitable[object]]


def timed(fn: Fn) -> work.Sample:
    async def sample() -> float:
        start = time.perf_counter()
        await fn()
        return time.perf_counter() - start

    return sample


async def sample_points(plan: Plan, samplers: list[work.Sample]) -> list[list[float]]:
    """``plan.warmup`` untimed runs of each sampler, then ``plan.samples`` (ms) of each, taken in turn."""
    for fn in samplers:
        for _ in range(plan.warmup):
            await fn()
    return await work.interleave(samplers, plan.samples)


@dataclass
class Curve:
    """Latency points of one curve: ``x`` (history length, agents, depth) -> samples in ms."""

    name: str
    measure: str
    x_label: str
    unit_of_x: str
    target: float | None
    note: str
    points: list[tuple[int, list[float]]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        first_x, first = self.points[0]
        out = []
        for x, ms in self.points:
            base = None if x == first_x else (load_label(first_x, self.unit_of_x), first)
            target = self.target if base is not None else None
            r = asdict(stdio_tools.row(self.measure, "ms", ms, base, at_most=target))
            out.append(
                {
                    "measure": r.pop("measure"),
                    "load": load_label(x, self.unit_of_x),
                    **r,
                    "n": len(ms),
                    "note": self.note,
                }
            )
        return out

    def summary(self) -> dict[str, Any]:
        first = statistics.median(self.points[0][1])
        return {
            "measure": self.measure,
            "note": self.note,
            "x": self.x_label,
            "unit": "ms",
            "target_vs_first": self.target,
            "points": [
                {
                    "x": x,
                    "median": statistics.median(ms),
                    "min": min(ms),
                    "max": max(ms),
                    "n": len(ms),
                    "vs_first": statistics.median(ms) / first,
                }
                for x, ms in self.points
            ],
        }


def load_label(x: int, unit: str) -> str:
    return f"{x:,} {unit}" if x != 1 else f"1 {unit.removesuffix('s')}"


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    print(f"{name} ...", flush=True)
    start = time.perf_counter()
    yield
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)


# ------------------------------------------------------------------------------------------------
# 1. Channel read vs history


async def read_curve(run: Run) -> Curve:
    namespace = "scale-read"
    layout = Layout(namespace)
    note = f"limit {READ_LIMIT}, no cursor: the newest page; history filled by fill_channel"
    curve = Curve(
        "channels_read",
        f"warp_channels_read, newest page of {READ_LIMIT} (stdio)",
        "messages of history",
        "msgs",
        1.2,
        note,
    )
    async with run.stdio("serve-read", namespace) as (client, _pid):
        await call(client, "warp_handle_set", {"handle": "scale-reader"})
        samplers = []
        for size in run.plan.history:
            channel = history_channel(size)
            await call(client, "warp_channels_send", {"channel": channel, "message": MESSAGE})  # makes the stream
            started = time.perf_counter()
            await fill_channel(run.nats, layout, channel, size - 1, timeout=120)
            print(f"  {channel}: {size:,} messages in {time.perf_counter() - started:.1f} s", flush=True)
            samplers.append(timed(await stdio_tools.checked_reader(client, channel, size)))
        for size, ms in zip(run.plan.history, await sample_points(run.plan, samplers), strict=True):
            curve.points.append((size, ms))
    return curve


# ------------------------------------------------------------------------------------------------
# 2. Discover vs registered agents


async def discover_curve(run: Run) -> Curve:
    note = "no arguments: the first page at the default limit (20); at 10 agents it holds 10"
    curve = Curve(
        "registry_discover",
        "warp_registry_discover, first page of 20 (stdio)",
        "registered agents",
        "agents",
        2.0,
        note,
    )
    async with contextlib.AsyncExitStack() as stack:
        samplers, clients = [], []
        for count in run.plan.agents:
            namespace = f"scale-agents-{count}"
            name = f"serve-agents-{count}"
            client, _pid = await stack.enter_async_context(run.stdio(name, namespace))
            await call(client, "warp_registry_register", {"agentType": "bench-agent", "capabilities": ["bench"]})
            started = time.perf_counter()
            deadline = 30 + REGISTER_S_PER_AGENT * count
            try:
                async with asyncio.timeout(deadline):
                    await register_agents(run.settings(namespace), count - 1)
            except TimeoutError as exc:
                raise BenchError(f"registering {count - 1} agents in {namespace} took over {deadline:.0f} s") from exc
            print(
                f"  {namespace}: {count - 1:,} agents registered in {time.perf_counter() - started:.1f} s", flush=True
            )

            async def total(client: Client = client) -> int:
                found = await call(client, "warp_registry_discover", {"limit": 1})
                if "total" not in found:
                    raise BenchError(f"warp_registry_discover gives no total: {found}")
                return int(found["total"])

            # The server learns of the other agents through its KV watch: poll until it counts them all.
            await wait_for(
                lambda total=total, count=count: _at_least(total, count),
                60,
                message=f"discover never counted {count} agents",
            )
            clients.append((count, total))

            async def discover(client: Client = client) -> object:
                return await call(client, "warp_registry_discover", {})

            samplers.append(timed(discover))
        for count, ms in zip(run.plan.agents, await sample_points(run.plan, samplers), strict=True):
            curve.points.append((count, ms))
        for count, total in clients:  # presence: registered agents read as offline after 3 missed heartbeats
            if (seen := await total()) != count:
                raise BenchError(f"discover counted {seen} agents after sampling, expected {count} (went stale?)")
        for count in run.plan.agents:
            run.memory.add("stdio serve (curve 2)", f"{count:,} agents", run.pids[f"serve-agents-{count}"])
    return curve


async def _at_least(total: Callable[[], Awaitable[int]], count: int) -> bool:
    return await total() >= count


# ------------------------------------------------------------------------------------------------
# 3. Claim vs pending items


def depth_capability(depth: int) -> str:
    return f"depth-{depth}"


async def queue(svc: WorkService, capability: str, total: int, rng: random.Random) -> None:
    """``total`` pending items of ``capability`` via ``WorkService.broadcast``, ``FILL_BATCH`` at a time."""
    offerer = work.new_caller()
    if total == 1:
        await svc.broadcast(offerer, task_id="only", description=WORK_DESCRIPTION, capability=capability)
    else:
        for first in range(0, total, FILL_BATCH):
            await asyncio.gather(
                *(
                    svc.broadcast(
                        offerer,
                        task_id=f"fill-{i}",
                        description=WORK_DESCRIPTION,
                        capability=capability,
                        priority=rng.randint(1, 10),
                    )
                    for i in range(first, min(total, first + FILL_BATCH))
                )
            )
    await check_depth(svc, capability, total)


async def check_depth(svc: WorkService, capability: str, total: int) -> None:
    [status] = await svc.views.status(capability)
    if (status.pending, status.inFlight) != (total, 0):
        raise BenchError(f"{capability}: {status.pending} pending, {status.inFlight} in flight; expected {total}, 0")


async def claim_curves(run: Run) -> tuple[Curve, Curve]:
    namespace = "scale-work"
    plan = run.plan
    settings = run.settings(namespace)  # the same settings as the MCP server's: both configure consumers alike
    note = "only the claim timed; completion and a replacement broadcast outside it, so the depth stays put"
    svc_curve = Curve("claim_service", "claim, WorkService in-process", "pending items", "items", 1.3, note)
    mcp_curve = Curve("claim_mcp", "warp_work_claim (stdio)", "pending items", "items", 1.3, note)
    svc = WorkService(run.nats, settings, Layout(namespace))
    await svc.ensure()
    me = work.new_caller()
    rng = random.Random(4)  # noqa: S311 (priorities of filler items)
    for depth in plan.depths:
        started = time.perf_counter()
        await queue(svc, depth_capability(depth), depth, rng)
        print(f"  queued {depth:,} items in {time.perf_counter() - started:.1f} s", flush=True)

    constant = work.ConstantDepth(svc, me, WORK_DESCRIPTION)

    async with run.stdio("serve-work", namespace) as (client, _pid):
        capabilities = [depth_capability(d) for d in plan.depths]
        await call(client, "warp_registry_register", {"agentType": "bench-worker", "capabilities": capabilities})
        mcp = work.Mcp(client)
        samplers = [constant.by_service(depth_capability(d)) for d in plan.depths]
        samplers += [constant.by_mcp(mcp, depth_capability(d)) for d in plan.mcp_depths]
        results = await sample_points(plan, samplers)
    for depth, ms in zip(plan.depths, results[: len(plan.depths)], strict=True):
        svc_curve.points.append((depth, ms))
    for depth, ms in zip(plan.mcp_depths, results[len(plan.depths) :], strict=True):
        mcp_curve.points.append((depth, ms))
    for depth in plan.depths:
        await check_depth(svc, depth_capability(depth), depth)
    return svc_curve, mcp_curve


# ------------------------------------------------------------------------------------------------
# The run and the report


async def run(plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        base = Path(tmp)
        project = base / "project"
        project.mkdir()
        write_project_config(project, plan.history)
        with NatsServer(base / "nats").start() as server:
            ctx = Run(plan, base, project, server.url)
            print(f"nats-server {server.url} (pid {server.pid}); servers under test: nats-mcp serve", flush=True)
            try:
                async with NatsConnection(ctx.settings("scale")) as conn:
                    if not await conn.wait_connected(10):
                        raise BenchError(f"could not connect to NATS: {conn.status()}")
                    ctx.conn = conn
                    with phase(f"1. warp_channels_read vs history {', '.join(f'{n:,}' for n in plan.history)}"):
                        read = await read_curve(ctx)
                    with phase(f"2. warp_registry_discover vs agents {', '.join(f'{n:,}' for n in plan.agents)}"):
                        discover = await discover_curve(ctx)
                    with phase(f"3. claim vs pending items {', '.join(f'{n:,}' for n in plan.depths)}"):
                        svc_claim, mcp_claim = await claim_curves(ctx)
                with phase(f"4+5. {', '.join(map(str, plan.concurrency))} concurrent agents over HTTP and gRPC; RSS"):
                    gateways = await scale_gateways.measure(ctx)
            except BaseException:
                for name, path in ctx.logs.items():
                    tail = path.read_text(errors="replace").splitlines()[-15:] if path.exists() else []
                    print(f"--- last lines of {name}'s stderr ---\n" + "\n".join(tail), file=sys.stderr)
                raise
    return {"curves": [read, discover, svc_claim, mcp_claim], "gateways": gateways, "memory": ctx.memory}


def memory_rows(memory: Memory) -> list[dict[str, Any]]:
    rows, idle = [], {}
    servers = list(dict.fromkeys(server for server, _, _ in memory.figures))
    for server, state, mib in sorted(memory.figures, key=lambda f: servers.index(f[0])):  # stable: in order taken
        base = idle.setdefault(server, (state, mib))
        row: dict[str, Any] = {
            "measure": f"server RSS, {server}",
            "load": state,
            "unit": "MiB",
            "median": mib,
            "min": mib,
            "max": mib,
            "baseline": None,
            "baseline_median": None,
            "ratio": None,
            "target": None,
            "met": None,
            "n": 1,
        }
        if (state, mib) != base:
            row |= {"baseline": base[0], "baseline_median": base[1], "ratio": mib / base[1]}
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'measure':<50} {'load':<26} {'unit':>7} {'median':>9} {'min':>9} {'max':>9} {'n':>5} {'ratio':>7}  target"
    )
    for r in rows:
        ratio = f"{r['ratio']:6.2f}x" if r.get("ratio") is not None else f"{'(base)':>7}"
        verdict = "" if r.get("target") is None else f"{r['target']} {'ok' if r['met'] else 'MISSED'}"
        print(
            f"{r['measure'][:50]:<50} {r['load']:<26} {r['unit']:>7} {r['median']:9.2f} {r['min']:9.2f}"
            f" {r['max']:9.2f} {r['n']:>5} {ratio}  {verdict}"
        )
    print(
        "(ratio: median / median of the curve's first point, or of the same server idle for RSS;"
        " ms: per call, lower is better; calls/s: aggregate, higher is better)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer points and samples (about a minute)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _interrupt)  # so the servers are stopped on the way out
    started = time.perf_counter()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        result = asyncio.run(run(plan))
    except BaseException as exc:
        reason = _bench_error(exc)
        if reason is None:
            raise
        sys.exit(f"bench/scale.py: {reason}")
    curves: list[Curve] = result["curves"]
    gateways: dict[str, Any] = result["gateways"]
    rows = [r for c in curves for r in c.rows()] + gateways["rows"] + memory_rows(result["memory"])
    scale_gateways.print_concurrency(gateways)
    print_table(rows)
    report = {
        "date": date,
        "quick": args.quick,
        "machine": machine(),
        "plan": asdict(plan),
        "elapsed_s": round(time.perf_counter() - started, 1),
        "rows": rows,
        "curves": {c.name: c.summary() for c in curves} | gateways["curves"],
        "memory": [{"server": s, "state": state, "mib": mib} for s, state, mib in result["memory"].figures],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    scale_plot.draw(report, RESULTS / "scale.png")
    print(f"\nwrote {RESULTS / 'scale.json'} and {RESULTS / 'scale.png'} in {report['elapsed_s']:.0f} s")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _bench_error(exc: BaseException) -> BaseException | None:
    return stdio_tools.find_error(exc, BENCH_ERRORS)


if __name__ == "__main__":
    main()
