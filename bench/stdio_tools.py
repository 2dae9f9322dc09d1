"""Benchmark boundary of `nats-mcp serve` over stdio: tool calls via the SDK client against same-run baselines.

Medians and ratios, because these machines are shared and noisy.

    .venv/bin/python bench/stdio_tools.py [--quick] [--server-script PATH]

a. baseline: an echo tool on the SDK's low-level Server over stdio (bench/echo_server.py), sequential calls/s;
b. ``warp_channels_send`` and ``warp_channels_read`` (limit 50) calls/s next to it (target: send >= 0.9x echo),
   and for context a bare JetStream publish+ack from this process (no MCP);
c. ``warp_channels_read`` latency with 1,000 vs 20,000 messages of history (target <= 1.2x);
d. ``warp_registry_discover`` latency with 10 vs 1,000 registered agents (target <= 2x);
e. a cProfile of the server process during the send loop: top 15 cumulative, and where the time goes.

One real nats-server on an OS-assigned port; every server process gets a private HOME and project
directory. History is filled by publishing straight to the channel's subject; agents are registered
in-process through ``RegistryService``, each as its own ``Caller`` (the server itself registers with the tool).
Both sides of a comparison are sampled alternately. Prints a table and writes
bench/results/stdio_tools.json (and the raw profile, bench/results/stdio_tools.prof).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import pstats
import re
import signal
import statistics
import sys
import sysconfig
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mcp_types as types  # noqa: E402
import nats  # noqa: E402
from mcp import Client, StdioServerParameters, stdio_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402
from nats.js import JetStreamContext  # noqa: E402
from nats.js.errors import NotFoundError  # noqa: E402
from tests.support.env import isolated_env, nats_mcp_exe  # noqa: E402
from tests.support.natsserver import NatsServer, wait_for  # noqa: E402

from nats_mcp.api.tools.base import ERROR_META  # noqa: E402
from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.bus.layout import Layout  # noqa: E402
from nats_mcp.config.coordination import DEFAULT_CHANNELS  # noqa: E402
from nats_mcp.config.loader import load_settings  # noqa: E402
from nats_mcp.config.settings import Settings  # noqa: E402
from nats_mcp.coord.context import Caller, owner_key  # noqa: E402
from nats_mcp.coord.registry.service import RegistryService  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ECHO_SERVER = ROOT / "bench" / "echo_server.py"
NAMESPACE = "bench"
SEND_CHANNEL = "parallel-work"
SMALL_HISTORY, LARGE_HISTORY = 1_000, 20_000
FEW_AGENTS, MANY_AGENTS = 10, 1_000
READ_LIMIT = 50
DISCOVER_LIMIT = 10
"""Both registry sizes return a full page of this many agents, so only the lookup cost differs."""
MESSAGE = "benchmark message: " + "x" * 80
TOP = 15
CALL_TIMEOUT_S = 30.0
"""No single call takes this long unless the server is stuck: then the run stops with the server's log."""


class BenchError(RuntimeError):
    """The harness could not measure (a tool is missing or failed, a fill did not land)."""


@dataclass(frozen=True)
class Plan:
    runs: int
    """Throughput runs per side (the median of these is reported)."""
    calls: int
    """Sequential calls per throughput run."""
    samples: int
    """Latency samples per side."""
    warmup: int
    profile_calls: int


QUICK = Plan(runs=3, calls=200, samples=30, warmup=20, profile_calls=300)
FULL = Plan(runs=7, calls=1_000, samples=200, warmup=100, profile_calls=2_000)


@dataclass(frozen=True)
class ServerCommand:
    """How to start the server under test: plainly, or in-process under a profiler switched by signals."""

    argv: list[str]
    python_target: list[str]
    """``["-m", module, args...]`` or ``[script, args...]``: the same server, run by this interpreter."""

    def profiled(self, out: Path, pid_file: Path) -> list[str]:
        return [sys.executable, "-c", PROFILED_SERVER, str(out), str(pid_file), *self.python_target]


PROFILED_SERVER = """
import cProfile, os, runpy, signal, sys
out, pid_file, target = sys.argv[1], sys.argv[2], sys.argv[3:]
profiler = cProfile.Profile()
def start(*_):
    profiler.enable()
def stop(*_):
    profiler.disable()
    profiler.dump_stats(out)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
with open(pid_file, "w") as f:
    f.write(str(os.getpid()))
if target[0] == "-m":
    sys.argv = target[1:]
    runpy.run_module(target[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = target
    runpy.run_path(target[0], run_name="__main__")
"""
"""Runs the server with a cProfile that SIGUSR1 starts and SIGUSR2 stops and writes, so the profile holds the
measured loop only, not start-up. Python runs signal handlers in the main thread, where the server's event loop
(and so every tool call) runs: a call answered after ``kill`` was handled after the handler ran."""


def nats_mcp_command() -> ServerCommand:
    return ServerCommand([nats_mcp_exe(), "serve"], ["-m", "nats_mcp.cli.main", "serve"])


def script_command(script: Path) -> ServerCommand:
    return ServerCommand([sys.executable, str(script)], [str(script)])


# ------------------------------------------------------------------------------------------------
# Statistics and rows


@dataclass
class Row:
    measure: str
    unit: str
    median: float
    min: float
    max: float
    baseline: str | None = None
    baseline_median: float | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None


def row(
    measure: str,
    unit: str,
    values: list[float],
    baseline: tuple[str, list[float]] | None = None,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
) -> Row:
    out = Row(measure, unit, statistics.median(values), min(values), max(values))
    if baseline is not None:
        out.baseline, out.baseline_median = baseline[0], statistics.median(baseline[1])
        out.ratio = out.median / out.baseline_median
        if at_least is not None:
            out.target, out.met = f">= {at_least:.2f}x", out.ratio >= at_least
        elif at_most is not None:
            out.target, out.met = f"<= {at_most:.2f}x", out.ratio <= at_most
    return out


def print_table(rows: list[Row]) -> None:
    print(f"\n{'measure':<52} {'unit':>7} {'median':>9} {'min':>9} {'max':>9} {'baseline':>9} {'ratio':>7}  target")
    for r in rows:
        base = f"{r.baseline_median:9.2f}" if r.baseline_median is not None else f"{'-':>9}"
        ratio = f"{r.ratio:6.2f}x" if r.ratio is not None else f"{'':>7}"
        verdict = "" if r.target is None else f"{r.target} {'ok' if r.met else 'MISSED'}"
        print(f"{r.measure:<52} {r.unit:>7} {r.median:9.2f} {r.min:9.2f} {r.max:9.2f} {base} {ratio}  {verdict}")
    print("(baseline: the median compared with: echo for b, the smaller size for c and d, the unprofiled send for e;")
    print(" calls/s: higher is better, ms: lower is better)")


# ------------------------------------------------------------------------------------------------
# MCP over stdio


@asynccontextmanager
async def session(argv: list[str], env: dict[str, str], cwd: Path, errlog: TextIO) -> AsyncIterator[Client]:
    """A connected SDK client of a fresh server process (tools listed once, as a real client does)."""
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(cwd))
    async with Client(stdio_client(params, errlog=errlog)) as client:
        await client.list_tools()
        yield client


def _text(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a tool; an error result or protocol error stops the benchmark with the server's message."""
    try:
        result = await client.call_tool(tool, arguments, read_timeout_seconds=CALL_TIMEOUT_S)
    except (MCPError, TimeoutError) as exc:
        raise BenchError(f"{tool}({arguments}): {exc!r}") from exc
    if result.is_error:
        raise BenchError(f"{tool}({arguments}) returned an error: {_text(result)}")
    return dict(result.structured_content or {})


Call = Callable[[], Awaitable[object]]


async def calls_per_s(fn: Call, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return n / (time.perf_counter() - start)


async def repeat(fn: Call, n: int) -> None:
    for _ in range(n):
        await fn()


async def alternate(a: Call, b: Call, n: int) -> tuple[list[float], list[float]]:
    """Latency samples (ms) of ``a`` and ``b`` taken alternately, so drift on the machine hits both."""
    out: tuple[list[float], list[float]] = ([], [])
    for _ in range(n):
        for fn, samples in ((a, out[0]), (b, out[1])):
            start = time.perf_counter()
            await fn()
            samples.append((time.perf_counter() - start) * 1e3)
    return out


# ------------------------------------------------------------------------------------------------
# Filling NATS directly


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def stored_messages(js: JetStreamContext, layout: Layout, channel: str) -> int:
    """Messages in the channel's stream, which the server must have made by now (a send went through)."""
    stream = layout.channel_stream(channel)
    try:
        return int((await js.stream_info(stream)).state.messages)
    except NotFoundError as exc:
        raise BenchError(f"stream {stream} does not exist after a send to channel {channel}") from exc


async def fill_history(js: JetStreamContext, layout: Layout, channel: str, total: int) -> None:
    """Publish filler messages (the stored message shape) until the channel's stream holds ``total``."""
    stream, subject = layout.channel_stream(channel), layout.channel_subject(channel)
    have = await stored_messages(js, layout, channel)
    sender, stamp = uuid.uuid4().hex, _now()
    acks = []
    for i in range(have, total):
        body = {
            "id": str(uuid.uuid4()),
            "handle": "filler",
            "senderGuid": sender,
            "message": f"history message {i}: {MESSAGE}",
            "timestamp": stamp,
        }
        acks.append(await js.publish_async(subject, json.dumps(body).encode(), stream=stream))
    await asyncio.gather(*acks)
    got = (await js.stream_info(stream)).state.messages
    if got != total:
        raise BenchError(f"stream {stream} holds {got} messages after the fill, expected {total} (limits?)")


async def register_agents(settings: Settings, count: int) -> None:
    """Register ``count`` agents of the settings' namespace in-process, each as its own Caller, through the same
    RegistryService the server uses (so their entries are exactly what ``count`` real agents would leave)."""
    layout = Layout(settings.resolved_namespace)
    async with NatsConnection(settings) as conn:
        if not await conn.wait_connected(10):
            raise BenchError(f"could not connect to NATS to register agents: {conn.status()}")
        registry = RegistryService(conn, settings, layout)
        await registry.start()
        try:

            async def one(i: int) -> None:
                caller = Caller(
                    guid=uuid.uuid4().hex,
                    namespace=layout.namespace,
                    project_id=settings.resolved_project_id,
                    owner=owner_key(f"bench-{i}"),
                )
                await registry.register(
                    caller, handle=f"agent-{i}", agent_type="bench-agent", capabilities=["bench"], scope="team"
                )

            for first in range(0, count, 50):
                await asyncio.gather(*(one(i) for i in range(first, min(count, first + 50))))
        finally:
            await registry.close()


# ------------------------------------------------------------------------------------------------
# The profile


IDLE = "idle: waiting in epoll"
STARTUP = "start-up: imports"
_STARTUP_BUILTINS = ("builtins.exec", "builtins.__import__", "builtins.__build_class__", "marshal.loads", "_imp.")
_STDLIB = sysconfig.get_paths()["stdlib"]
_PACKAGES = (
    ("/nats_mcp/", "nats_mcp"),
    ("/mcp_types/", "MCP SDK"),
    ("/mcp/", "MCP SDK"),
    ("/pydantic", "pydantic"),
    ("/nats/", "nats-py"),
    ("/anyio/", "event loop (anyio + asyncio)"),
    ("/asyncio/", "event loop (anyio + asyncio)"),
    ("/json/", "json"),
    ("/logging/", "logging"),
)


def _bucket_of(file: str, name: str) -> str | None:
    """Where a profile entry's own time belongs; None for builtins, whose time belongs to their callers."""
    if file == "~":
        if "select.epoll" in name and "poll" in name:
            return IDLE
        if any(marker in name for marker in _STARTUP_BUILTINS):
            return STARTUP
        if "pydantic_core" in name:
            return "pydantic"
        if "json" in name:
            return "json"
        return None
    if name == "<module>" or file.startswith("<frozen"):
        return STARTUP
    for needle, bucket in _PACKAGES:
        if needle in file:
            return bucket
    if file.startswith(_STDLIB) and "site-packages" not in file:
        return "other stdlib"
    return "other libraries" if "site-packages" in file else "server code"


_SHORT = re.compile(r"^.*(site-packages/|/src/|/lib/python3\.\d+/)")
Stat = tuple[tuple[str, int, str], tuple[int, int, float, float, dict[Any, Any]]]


def _entries(stats: pstats.Stats) -> list[Stat]:
    raw: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    return list(raw.items())


def _label(file: str, line: int, name: str) -> str:
    if file == "~":
        return name
    return f"{_SHORT.sub('', file)}:{line}({name})"


def _module_of(file: str) -> str:
    """``threading``, ``uuid``, ``typing_extensions``...: the top-level module a file belongs to."""
    rest = _SHORT.sub("", file)
    return rest.split("/", 1)[0].removesuffix(".py") if rest != file else Path(file).stem


@dataclass
class Buckets:
    """Own time per bucket, and per top-level module inside the "other" buckets."""

    seconds: dict[str, float]
    modules: dict[str, dict[str, float]]


def time_buckets(stats: pstats.Stats) -> Buckets:
    """A builtin's own time goes to the buckets of its callers, in proportion to the time each caller gave it."""
    seconds: dict[str, float] = defaultdict(float)
    modules: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def add(file: str, name: str, bucket: str, t: float) -> None:
        seconds[bucket] += t
        if bucket.startswith("other") and file != "~":
            modules[bucket][_module_of(file)] += t

    for (file, _line, name), (_cc, _nc, tottime, _ct, callers) in _entries(stats):
        bucket = _bucket_of(file, name)
        if bucket is not None:
            add(file, name, bucket, tottime)
            continue
        caller_time = {caller: data[2] for caller, data in callers.items()}
        share = sum(caller_time.values())
        if share <= 0:
            seconds["other builtins"] += tottime
            continue
        for (cfile, _cline, cname), ct in caller_time.items():
            add(cfile, cname, _bucket_of(cfile, cname) or "other builtins", tottime * ct / share)
    return Buckets(dict(seconds), {bucket: dict(per) for bucket, per in modules.items()})


def top_cumulative(stats: pstats.Stats, n: int) -> tuple[str, list[dict[str, Any]]]:
    """The ``n`` entries with the most cumulative time, start-up (import) entries left out."""
    ranked = sorted(
        (entry for entry in _entries(stats) if _bucket_of(entry[0][0], entry[0][2]) != STARTUP),
        key=lambda entry: entry[1][3],
        reverse=True,
    )[:n]
    lines = [f"{'ncalls':>9} {'tottime s':>10} {'cumtime s':>10}  function"]
    entries = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in ranked:
        label = _label(file, line, name)
        lines.append(f"{nc:>9} {tt:>10.3f} {ct:>10.3f}  {label}")
        entries.append({"function": label, "ncalls": nc, "tottime_s": tt, "cumtime_s": ct})
    return "\n".join(lines), entries


def heaviest(stats: pstats.Stats, n: int) -> list[tuple[str, float]]:
    """The ``n`` busiest entries by own time (idle wait and start-up left out)."""
    busy = [
        (_label(*key), value[2]) for key, value in _entries(stats) if _bucket_of(key[0], key[2]) not in (IDLE, STARTUP)
    ]
    return sorted(busy, key=lambda item: item[1], reverse=True)[:n]


def where_time_goes(buckets: Buckets, calls: int, rate: float, plain_rate: float, top: list[Any]) -> str:
    seconds = buckets.seconds
    total = sum(seconds.values())
    idle, startup = seconds.get(IDLE, 0.0), seconds.get(STARTUP, 0.0)
    busy = total - idle - startup
    parts = sorted(((k, t) for k, t in seconds.items() if k not in (IDLE, STARTUP)), key=lambda kv: -kv[1])

    def share(name: str, t: float) -> str:
        inside = sorted(buckets.modules.get(name, {}).items(), key=lambda kv: -kv[1])[:3]
        detail = f" ({', '.join(module for module, _ in inside)})" if inside else ""
        return f"{name} {100 * t / busy:.0f} %{detail}"

    shares = ", ".join(share(name, t) for name, t in parts if busy > 0 and t / busy >= 0.01)
    heavy = "; ".join(f"{name} {1e3 * t / calls:.3f} ms/call" for name, t in top)
    return (
        f"Where the time goes: under cProfile the send loop ran at {rate:.0f} calls/s ({rate / plain_rate:.2f}x the "
        f"unprofiled {plain_rate:.0f} calls/s; profiling slows Python code, so read shares, not absolutes). The "
        f"server's main thread was profiled around the loop only ({calls} calls), {total:.2f} s: {idle:.2f} s idle "
        f"in epoll waiting for the client or NATS, {startup:.2f} s importing, and {busy:.2f} s busy, about "
        f"{1e3 * busy / calls:.2f} ms per call. The busy time splits as: {shares}. Heaviest functions by own "
        f"time: {heavy}. nats-mcp reads stdin on the event loop (the SDK's own transport would use a worker "
        "thread, which cProfile does not see); ncalls of a coroutine count each resumption."
    )


# ------------------------------------------------------------------------------------------------
# The run


@dataclass
class Context:
    plan: Plan
    command: ServerCommand
    base: Path
    project: Path
    url: str
    logs: dict[str, Path]

    def env(self, namespace: str) -> dict[str, str]:
        return isolated_env(self.project, NATS_URL=self.url, NATS_MCP_NAMESPACE=namespace)

    @asynccontextmanager
    async def server(
        self, name: str, argv: list[str], namespace: str, *, needs_nats: bool = True
    ) -> AsyncIterator[Client]:
        """A session with a fresh server process; with ``needs_nats``, only once its NATS side is up."""
        log_path = self.base / f"{name}.log"
        self.logs[name] = log_path
        with log_path.open("w") as errlog:
            async with session(argv, self.env(namespace), self.project, errlog) as client:
                if needs_nats:
                    await wait_for(lambda: nats_ready(client), 30, message=f"{name}: NATS never became available")
                yield client


async def nats_ready(client: Client) -> bool:
    """True once a tool that needs NATS answers; False while the server says ``nats_unavailable``.

    `nats-mcp serve` answers MCP at once and connects to NATS beside it, so a call that arrives before
    the first connection is made fails with ``nats_unavailable`` (retry later) rather than waiting.
    """
    result = await client.call_tool("warp_channels_status", {}, read_timeout_seconds=CALL_TIMEOUT_S)
    error = (result.meta or {}).get(ERROR_META) if result.is_error else None
    if isinstance(error, dict) and error.get("code") == "nats_unavailable":
        return False
    if result.is_error:
        raise BenchError(f"warp_channels_status failed: {_text(result)}")
    return True


def write_project_config(project: Path) -> None:
    """The default channels plus two history channels large enough to keep 20,000 messages."""
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
    for name, size in (("bench-small", SMALL_HISTORY), ("bench-large", LARGE_HISTORY)):
        channels.append(
            {
                "name": name,
                "description": f"benchmark history of {size} messages",
                "maxMessages": 100_000,
                "maxBytes": 256 * 1024 * 1024,
                "maxAge": "24h",
            }
        )
    (project / ".mcp-config.json").write_text(json.dumps({"channels": channels}, indent=2))


async def throughput(ctx: Context, js: JetStreamContext, rows: list[Row]) -> float:
    """a + b: echo vs send vs read (and, for context, a bare JetStream publish from this process), one run of
    each in turn. Returns the median send rate."""
    plan = ctx.plan
    layout = Layout(NAMESPACE)
    subject, stream = layout.channel_subject(SEND_CHANNEL), layout.channel_stream(SEND_CHANNEL)
    async with (
        ctx.server("echo", [sys.executable, str(ECHO_SERVER)], NAMESPACE, needs_nats=False) as echo,
        ctx.server(
            "echo-mcpserver", [sys.executable, str(ECHO_SERVER), "--mcpserver"], NAMESPACE, needs_nats=False
        ) as echo_high,
        ctx.server("serve", ctx.command.argv, NAMESPACE) as serve,
    ):
        await call(serve, "warp_handle_set", {"handle": "bench"})

        async def echo_call() -> object:
            return await call(echo, "echo", {"text": MESSAGE})

        async def echo_high_call() -> object:
            return await call(echo_high, "echo", {"text": MESSAGE})

        async def send_call() -> object:
            return await call(serve, "warp_channels_send", {"channel": SEND_CHANNEL, "message": MESSAGE})

        async def read_call() -> object:
            return await call(serve, "warp_channels_read", {"channel": SEND_CHANNEL, "limit": READ_LIMIT})

        async def publish() -> object:  # the stream exists: send_call made it
            body = {
                "id": str(uuid.uuid4()),
                "handle": "bench",
                "senderGuid": "0" * 32,
                "message": MESSAGE,
                "timestamp": _now(),
            }
            return await js.publish(subject, json.dumps(body).encode(), stream=stream)

        loops = {
            "echo": echo_call,
            "mcpserver": echo_high_call,
            "send": send_call,
            "read": read_call,
            "publish": publish,
        }
        for fn in loops.values():
            if fn is publish:
                await stored_messages(js, layout, SEND_CHANNEL)
            await repeat(fn, plan.warmup)
        rates: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(plan.runs):
            for name, fn in loops.items():
                rates[name].append(await calls_per_s(fn, plan.calls))
        for name, values in rates.items():
            print(f"  {name:<7} calls/s per run: {', '.join(f'{r:.0f}' for r in values)}", flush=True)
    base = ("echo tool", rates["echo"])
    rows.append(row("a. echo tool, low-level Server (baseline)", "calls/s", rates["echo"]))
    rows.append(row("a. (choice) echo tool, MCPServer", "calls/s", rates["mcpserver"], base))
    rows.append(row("b. warp_channels_send", "calls/s", rates["send"], base, at_least=0.9))
    rows.append(row(f"b. warp_channels_read (limit {READ_LIMIT})", "calls/s", rates["read"], base))
    rows.append(row("b. (context) JetStream publish+ack, nats-py, no MCP", "calls/s", rates["publish"], base))
    return statistics.median(rates["send"])


async def checked_reader(client: Client, channel: str, size: int) -> Call:
    """A ``warp_channels_read`` (limit READ_LIMIT) of ``channel``, once checked to see a full page of ``size``."""
    arguments = {"channel": channel, "limit": READ_LIMIT}
    page = await call(client, "warp_channels_read", arguments)
    if len(page.get("messages", [])) != READ_LIMIT or page.get("total", size) != size:
        raise BenchError(
            f"read of {channel}: {len(page.get('messages', []))} messages, total "
            f"{page.get('total')}; expected {READ_LIMIT} of {size}"
        )

    async def read() -> object:
        return await call(client, "warp_channels_read", arguments)

    return read


async def history(ctx: Context, js: JetStreamContext, rows: list[Row]) -> None:
    """c: the same read against 1,000 and 20,000 messages of history, sampled alternately."""
    layout = Layout(NAMESPACE)
    async with ctx.server("serve-history", ctx.command.argv, NAMESPACE) as serve:
        await call(serve, "warp_handle_set", {"handle": "bench-history"})
        reads: list[Call] = []
        for channel, size in (("bench-small", SMALL_HISTORY), ("bench-large", LARGE_HISTORY)):
            await call(serve, "warp_channels_send", {"channel": channel, "message": MESSAGE})
            await fill_history(js, layout, channel, size)
            reads.append(await checked_reader(serve, channel, size))
        for fn in reads:
            await repeat(fn, ctx.plan.warmup)
        small, large = await alternate(reads[0], reads[1], ctx.plan.samples)
    base = (f"read with {SMALL_HISTORY} messages", small)
    rows.append(row(f"c. warp_channels_read, {SMALL_HISTORY:,} msgs of history", "ms", small))
    rows.append(row(f"c. warp_channels_read, {LARGE_HISTORY:,} msgs of history", "ms", large, base, at_most=1.2))


async def registry(ctx: Context, rows: list[Row]) -> None:
    """d: discover in a namespace of 10 agents and one of 1,000 (one server each), sampled alternately."""
    discover_args = {"limit": DISCOVER_LIMIT}
    async with contextlib.AsyncExitStack() as stack:
        discovers: list[Call] = []
        for count in (FEW_AGENTS, MANY_AGENTS):
            namespace = f"{NAMESPACE}-agents-{count}"
            serve = await stack.enter_async_context(ctx.server(f"serve-{count}-agents", ctx.command.argv, namespace))
            await call(serve, "warp_registry_register", {"agentType": "bench-agent", "capabilities": ["bench"]})
            print(f"  registering {count - 1} more agents in namespace {namespace}", flush=True)
            try:
                async with asyncio.timeout(60):
                    await register_agents(load_settings(environ=ctx.env(namespace)).settings, count - 1)
            except TimeoutError as exc:
                raise BenchError(f"registering {count - 1} agents in {namespace} took over 60 s") from exc

            async def counted_all(serve: Client = serve, count: int = count) -> bool:
                found = await call(serve, "warp_registry_discover", {"limit": 1})
                if "total" not in found:
                    raise BenchError(f"warp_registry_discover gives no total: {found}")
                return int(found["total"]) >= count

            # The server learns of the other agents through its KV watch: poll until it counts them all.
            await wait_for(counted_all, 30, message=f"discover never counted {count} agents")

            async def discover(serve: Client = serve) -> object:
                return await call(serve, "warp_registry_discover", discover_args)

            discovers.append(discover)
        for fn in discovers:
            await repeat(fn, ctx.plan.warmup)
        few, many = await alternate(discovers[0], discovers[1], ctx.plan.samples)
    base = (f"discover with {FEW_AGENTS} agents", few)
    rows.append(row(f"d. warp_registry_discover, {FEW_AGENTS} agents", "ms", few))
    rows.append(row(f"d. warp_registry_discover, {MANY_AGENTS:,} agents", "ms", many, base, at_most=2.0))


async def profile(ctx: Context, send_rate: float, rows: list[Row]) -> dict[str, Any]:
    """e: the send loop against the server with cProfile switched on around the loop only."""
    out, pid_file = RESULTS / "stdio_tools.prof", ctx.base / "profiled.pid"
    out.unlink(missing_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    async with ctx.server("serve-profiled", ctx.command.profiled(out, pid_file), NAMESPACE) as serve:
        pid = int(pid_file.read_text())  # written before the server started answering
        await call(serve, "warp_handle_set", {"handle": "bench-profiled"})

        async def send_call() -> object:
            return await call(serve, "warp_channels_send", {"channel": SEND_CHANNEL, "message": MESSAGE})

        await repeat(send_call, ctx.plan.warmup)
        os.kill(pid, signal.SIGUSR1)
        await send_call()  # answered only after the handler enabled the profiler
        rate = await calls_per_s(send_call, ctx.plan.profile_calls)
        os.kill(pid, signal.SIGUSR2)
        await call(serve, "warp_handle_get", {})  # answered only after the profile was written
        if not out.exists():
            raise BenchError(f"the profiled server wrote no {out}")
    rows.append(row("e. warp_channels_send under cProfile", "calls/s", [rate], ("send, unprofiled", [send_rate])))
    stats = pstats.Stats(str(out))
    text, entries = top_cumulative(stats, TOP)
    buckets = time_buckets(stats)
    calls = ctx.plan.profile_calls + 1
    summary = where_time_goes(buckets, calls, rate, send_rate, heaviest(stats, 3))
    return {
        "file": str(out),
        "calls_per_s": rate,
        "calls": calls,
        "top_cumulative": entries,
        "buckets_s": buckets.seconds,
        "modules_s": buckets.modules,
        "summary": summary,
        "pstats_text": text,
    }


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    print(f"{name} ...", flush=True)
    start = time.perf_counter()
    yield
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)


async def run(plan: Plan, command: ServerCommand) -> dict[str, Any]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-stdio-") as tmp:
        base = Path(tmp)
        project = base / "project"
        project.mkdir()
        write_project_config(project)
        ctx = Context(plan, command, base, project, "", {})
        try:
            with NatsServer(base / "nats").start() as server:
                ctx.url = server.url
                print(f"nats-server {server.url}; server under test: {' '.join(command.argv)}", flush=True)
                nc = await nats.connect(server.url)
                try:
                    js = nc.jetstream()
                    with phase("a+b. echo, send, read calls/s"):
                        send_rate = await throughput(ctx, js, rows)
                    with phase(f"c. read latency, {SMALL_HISTORY:,} vs {LARGE_HISTORY:,} messages of history"):
                        await history(ctx, js, rows)
                    with phase(f"d. discover latency, {FEW_AGENTS} vs {MANY_AGENTS:,} agents"):
                        await registry(ctx, rows)
                finally:
                    await nc.close()
                with phase("e. profile of the send loop"):
                    prof = await profile(ctx, send_rate, rows)
        except BaseException:
            for name, path in ctx.logs.items():
                tail = path.read_text(errors="replace").splitlines()[-15:] if path.exists() else []
                print(f"--- last lines of the {name} server's stderr ---\n" + "\n".join(tail), file=sys.stderr)
            raise
    return {"rows": rows, "profile": prof}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repetitions (well under a minute), for CI")
    parser.add_argument(
        "--server-script",
        type=Path,
        help="benchmark this Python MCP server script (run with this interpreter) instead of `nats-mcp serve`",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    command = script_command(args.server_script.resolve()) if args.server_script else nats_mcp_command()
    started = time.perf_counter()
    try:
        result = asyncio.run(run(plan, command))
    except BaseException as exc:
        reason = _bench_error(exc)
        if reason is None:
            raise
        sys.exit(f"bench/stdio_tools.py: {reason}")
    rows: list[Row] = result["rows"]
    prof: dict[str, Any] = result["profile"]
    print(f"\nserver process profile, top {TOP} by cumulative time, imports left out (all of it: {prof['file']}):")
    print(prof["pstats_text"].strip())
    print("\n" + prof["summary"])
    print_table(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "plan": asdict(plan),
        "quick": args.quick,
        "server": command.argv,
        "elapsed_s": time.perf_counter() - started,
        "environment": {
            "python": platform.python_version(),
            "mcp": version("mcp"),
            "nats-py": version("nats-py"),
            "machine": platform.machine(),
            "cpus": _cpus(),
        },
        "rows": [asdict(r) for r in rows],
        "profile": {k: v for k, v in prof.items() if k != "pstats_text"},
    }
    (RESULTS / "stdio_tools.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {RESULTS / 'stdio_tools.json'} in {report['elapsed_s']:.1f} s")


def find_error(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of ``kinds`` behind ``exc``, also from inside the SDK's task-group exception groups."""
    if isinstance(exc, kinds):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_error(inner, kinds)
            if found is not None:
                return found
    return None


def _bench_error(exc: BaseException) -> BaseException | None:
    return find_error(exc, (BenchError,))


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
