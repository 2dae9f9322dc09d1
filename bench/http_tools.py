"""Benchmark boundary of `nats-mcp serve --transport http`: tool calls/s over streamable HTTP against the SDK's echo.

(Not named bench/http.py: a script run from bench/ has bench/ first on sys.path, so a bench/http.py would shadow
the standard library's ``http`` for every script there, and the SDK imports it.)

    .venv/bin/python bench/http_tools.py [--quick]

One run, one real nats-server, every server in its own process, all sampled alternately (round-robin, the
order rotated each round), each sample a fixed time of calls through the SDK client (``mcp.Client`` over
``streamable_http_client``), sequentially and with 10 calls in flight (10 asyncio tasks sharing one client
session, so one agent with 10 concurrent calls), in both protocol modes (``auto``, which negotiates
2026-07-28, and ``legacy``, the 2025-11-25 handshake):

a. the SDK echo (bench/echo_http.py: the low-level Server's ``streamable_http_app``, uvicorn), no authentication;
b. the same with a bearer ``TokenVerifier`` (a static token);
c. ``nats-mcp serve --transport http --insecure-dev``: ``warp_channels_list`` (no NATS round trip) — target
   >= 0.8x a;
d. the same with an API key (``nats-mcp keys create``; one KV get and a cached scrypt per request) — target
   >= 0.8x b;
c', d'. as c and d, with TCP_NODELAY on the accepted connections (a bench-side patch; see below);
context: the echo with its socket bound the way serve_cmd.py binds it; d' with the audit log off
(``NATS_MCP_SECURITY_AUDIT_ENABLED=false``); ``warp_channels_send`` through d and d'.

Why c'/d': serve_cmd.py binds its listening socket as ``socket.socket(family, SOCK_STREAM)`` (proto 0) and hands it
to uvicorn; asyncio only sets TCP_NODELAY on sockets whose proto is IPPROTO_TCP, and accepted sockets inherit
proto 0, so Nagle stays on: the SSE body written after the response headers waits for the client's delayed ACK
(~40 ms). The SDK client's 2026-07-28 requests hit it on every call (the echo row "socket as serve_cmd" shows the
same drop); its legacy sessions were not measurably slowed in our runs. c'/d' run the same
``nats-mcp serve`` under a wrapper that makes asyncio set TCP_NODELAY regardless of proto: what the one-line fix
(``socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)``) gives. The same wrapper profiles d' with
cProfile (switched on by SIGUSR1 around the measured loops only) to show where the server's time goes.

The nats-mcp servers run with the rate limits raised (the defaults, 20 calls/s per principal and 50 per
address, would refuse most of these calls). Prints a table and the profile summary; writes
bench/results/http.json and bench/results/http.prof.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import pstats
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import mcp_types as types  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402
from stdio_tools import IDLE, STARTUP, find_error, heaviest, row, time_buckets, top_cumulative  # noqa: E402
from tests.support.env import isolated_env, nats_mcp_exe  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ECHO_HTTP = BENCH / "echo_http.py"
LIST_TOOL, SEND_TOOL, ECHO_TOOL = "warp_channels_list", "warp_channels_send", "echo"
SEND_CHANNEL = "parallel-work"
MESSAGE = "benchmark message: " + "x" * 80
IN_FLIGHT = 10
MODES = {"auto": "2026-07-28", "legacy": "2025-11-25"}
CALL_TIMEOUT_S = 30.0
START_TIMEOUT_S = 30.0
TOP = 15
UNLIMITED = {
    f"NATS_MCP_SECURITY_RATE_PER_{who}_{what}": value
    for who in ("PRINCIPAL", "ADDRESS")
    for what, value in (("RATE_PER_S", "1000000"), ("BURST", "10000000"))
} | {"NATS_MCP_SECURITY_MAX_AGENTS_PER_PRINCIPAL": "100000"}  # one key runs every agent of a curve


class BenchError(RuntimeError):
    """The harness could not measure (a server did not start, a call failed)."""


@dataclass(frozen=True)
class Plan:
    rounds: int
    """Samples per cell; each round samples every cell once."""
    sample_s: float
    """Seconds of calls per sample."""
    warmup: int
    """Calls per session before measuring."""
    profile_s: float
    """Seconds of sequential, then of 10-in-flight calls under the profiler."""


QUICK = Plan(rounds=3, sample_s=0.12, warmup=3, profile_s=0.6)
FULL = Plan(rounds=11, sample_s=1.0, warmup=50, profile_s=6.0)


# ------------------------------------------------------------------------------------------------
# Server processes


WRAPPER = """
import asyncio.base_events, cProfile, os, runpy, signal, socket, sys, time
out, pid_file, nodelay, target = sys.argv[1], sys.argv[2], sys.argv[3] == "nodelay", sys.argv[4:]
if nodelay:
    def _set_nodelay(sock):
        if sock.family in {socket.AF_INET, socket.AF_INET6} and sock.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    asyncio.base_events._set_nodelay = _set_nodelay
profiler = cProfile.Profile(time.thread_time)
def start(*_):
    profiler.enable()
def stop(*_):
    profiler.disable()
    profiler.dump_stats(out)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
with open(pid_file, "w") as f:
    f.write(str(os.getpid()))
sys.argv = target[1:]
runpy.run_module(target[1], run_name="__main__", alter_sys=True)
"""
"""Runs ``-m module args...`` with asyncio setting TCP_NODELAY on every TCP connection (``nodelay``; asyncio's own
check also wants proto == IPPROTO_TCP), and a cProfile on the main thread's CPU clock that SIGUSR1 starts and
SIGUSR2 stops and writes. Python runs signal handlers in the main thread, where the event loop (and every request)
runs: a call answered after ``kill`` returned was handled after the handler ran."""


@dataclass
class Spec:
    """One server process under test."""

    name: str
    kind: str
    """``echo`` or ``nats-mcp``."""
    token: str | None = None
    nodelay: bool = False
    prebound: bool = False
    audit: bool = True
    insecure: bool = False
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    pid_file: Path | None = None
    port_file: Path | None = None
    handle_set: bool = False
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of the server process."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def server_argv(spec: Spec, base: Path, port_file: Path) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of a server (each nats-mcp gets its own HOME and project directory)."""
    if spec.kind == "echo":
        argv = [sys.executable, str(ECHO_HTTP), "--port-file", str(port_file)]
        argv += ["--token", spec.token] if spec.token else []
        argv += ["--prebound"] if spec.prebound else []
        return argv, {**os.environ}
    serve = ["serve", "--transport", "http", "--port", "0", *(["--insecure-dev"] if spec.insecure else [])]
    if spec.nodelay:
        assert spec.pid_file is not None
        prof = RESULTS / "http.prof"
        argv = [sys.executable, "-c", WRAPPER, str(prof), str(spec.pid_file), "nodelay", "-m", "nats_mcp.cli.main"]
        argv += serve
    else:
        argv = [nats_mcp_exe(), *serve]
    project = base / spec.name.replace(" ", "-").replace(",", "")
    project.mkdir(parents=True, exist_ok=True)
    env = isolated_env(project, NATS_MCP_NAMESPACE="bench", NATS_MCP_HTTP_PORT_FILE=str(port_file), **UNLIMITED)
    if not spec.audit:
        env["NATS_MCP_SECURITY_AUDIT_ENABLED"] = "false"
    return argv, {**env, **spec.env}


def launch(spec: Spec, base: Path, nats_url: str) -> None:
    port_file = base / f"{spec.name}.port".replace(" ", "-").replace(",", "")
    spec.port_file, spec.pid_file, spec.log = port_file, port_file.with_suffix(".pid"), port_file.with_suffix(".log")
    argv, env = server_argv(spec, base, port_file)
    if spec.kind == "nats-mcp":
        env["NATS_URL"] = nats_url
    with spec.log.open("wb") as log:
        spec.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(base))


async def wait_listening(specs: list[Spec]) -> None:
    """Return when every launched server has written its port file."""
    deadline = time.monotonic() + START_TIMEOUT_S
    for spec in specs:
        port_file = spec.port_file
        assert port_file is not None
        while not (port_file.exists() and port_file.read_text().strip()):
            assert spec.process is not None
            if spec.process.poll() is not None:
                raise BenchError(f"{spec.name} exited with {spec.process.returncode} before listening")
            if time.monotonic() > deadline:
                raise BenchError(f"{spec.name} wrote no port file within {START_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.02)
        spec.port = int(port_file.read_text())


def stop_servers(specs: list[Spec]) -> None:
    for spec in specs:
        if spec.process is not None and spec.process.poll() is None:
            spec.process.terminate()
    for spec in specs:
        if spec.process is None:
            continue
        try:
            spec.process.wait(10)
        except subprocess.TimeoutExpired:
            spec.process.kill()
            spec.process.wait()


def log_tails(specs: list[Spec]) -> None:
    for spec in specs:
        if spec.log is not None and spec.log.exists():
            tail = spec.log.read_text(errors="replace").splitlines()[-15:]
            print(f"--- last lines of {spec.name}'s output ---\n" + "\n".join(tail), file=sys.stderr)


def create_api_key(base: Path, nats_url: str) -> str:
    """``nats-mcp keys create --name bench --role agent --json`` against the run's NATS."""
    env = isolated_env(base / "keys", NATS_URL=nats_url, NATS_MCP_NAMESPACE="bench")
    done = subprocess.run(
        [nats_mcp_exe(), "keys", "create", "--name", "bench", "--role", "agent", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"nats-mcp keys create failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return str(json.loads(done.stdout)["key"])


# ------------------------------------------------------------------------------------------------
# Clients and calls


KEEPALIVE_EXPIRY_S = 2.0


def http_client(headers: dict[str, str] | None) -> httpx2.AsyncClient:
    """``create_mcp_http_client``'s client (same timeouts, headers), but idle connections are dropped after 2 s.

    uvicorn closes a connection idle for 5 s (``timeout_keep_alive``) and httpx keeps one for 5 s
    (``keepalive_expiry``): a request sent on a connection idle for about 5 s races the close, gets a ReadError,
    and the SDK client's session dies of it (it is raised out of the session's task group). Sessions here sit idle
    while the other cells are sampled, so the client lets go first.
    """
    timeout = httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT)
    limits = httpx2.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S)
    return httpx2.AsyncClient(headers=headers, timeout=timeout, limits=limits)


async def connect(stack: contextlib.AsyncExitStack, spec: Spec, mode: str) -> Client:
    headers = {"Authorization": f"Bearer {spec.token}"} if spec.token else None
    http = await stack.enter_async_context(http_client(headers))
    client = await stack.enter_async_context(Client(streamable_http_client(spec.url, http_client=http), mode=mode))
    await client.list_tools()  # as a real client does; the SDK uses the output schemas it lists
    if client.protocol_version != MODES[mode]:
        raise BenchError(f"{spec.name} ({mode}) negotiated {client.protocol_version}, expected {MODES[mode]}")
    return client


@contextlib.asynccontextmanager
async def session(spec: Spec, mode: str) -> AsyncIterator[Client]:
    """A connected SDK client of ``spec`` in ``mode`` (retried while the server is still coming up)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        stack = contextlib.AsyncExitStack()
        try:
            client = await connect(stack, spec, mode)
            break
        except Exception as exc:  # connection refused while the server starts (inside the SDK's exception group)
            with contextlib.suppress(Exception):
                await stack.aclose()
            if isinstance(exc, BenchError):
                raise
            if time.monotonic() > deadline or not _connect_error(exc):
                raise BenchError(f"{spec.name} ({mode}): could not connect: {exc!r}") from exc
            await asyncio.sleep(0.1)
    async with stack:
        yield client


def _connect_error(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_connect_error(inner) for inner in exc.exceptions)
    return "ConnectError" in type(exc).__name__ or isinstance(exc, ConnectionError)


def _text(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


Call = Callable[[], Awaitable[object]]


def caller(client: Client, tool: str, arguments: dict[str, Any], where: str) -> Call:
    async def call() -> object:
        try:
            result = await client.call_tool(tool, arguments, read_timeout_seconds=CALL_TIMEOUT_S)
        except (MCPError, TimeoutError) as exc:
            raise BenchError(f"{where}: {tool}: {exc!r}") from exc
        if result.is_error:
            raise BenchError(f"{where}: {tool} returned an error: {_text(result)[:300]}")
        return result

    return call


async def sequential(fn: Call, seconds: float) -> int:
    """Back-to-back calls for ``seconds`` (at least 3); returns how many."""
    n, start = 0, time.perf_counter()
    while True:
        await fn()
        n += 1
        if time.perf_counter() - start >= seconds and n >= 3:
            return n


async def in_flight(fn: Call, seconds: float, width: int = IN_FLIGHT) -> int:
    """``width`` tasks calling back to back for ``seconds`` (each ends its last call); returns how many calls."""
    start = time.perf_counter()
    counts = [0] * width

    async def worker(i: int) -> None:
        while True:
            await fn()
            counts[i] += 1
            if time.perf_counter() - start >= seconds:
                return

    await asyncio.gather(*(worker(i) for i in range(width)))
    return sum(counts)


def cpu_s(pid: int) -> float:
    """CPU seconds all threads of process ``pid`` have run (``/proc/PID/task/*/schedstat``, nanoseconds)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


@dataclass(frozen=True)
class Sample:
    rate: float
    """Calls/s."""
    server_ms: float
    """Server process CPU per call (all its threads)."""
    client_ms: float
    """This process's CPU per call (the SDK client)."""


async def sample(fn: Call, seconds: float, width: int, pid: int) -> Sample:
    """One timed run; ``width`` untimed calls first open the connections it will use (idle ones were dropped)."""
    await asyncio.gather(*(fn() for _ in range(width)))
    server0, client0, start = cpu_s(pid), time.process_time(), time.perf_counter()
    n = await (sequential(fn, seconds) if width == 1 else in_flight(fn, seconds, width))
    elapsed, client, server = time.perf_counter() - start, time.process_time() - client0, cpu_s(pid) - server0
    return Sample(n / elapsed, 1e3 * server / n, 1e3 * client / n)


async def set_handle(client: Client, spec: Spec) -> None:
    """``warp_channels_send`` needs a handle; wait for NATS (``nats_unavailable`` until the server is connected)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        result = await client.call_tool("warp_handle_set", {"handle": "bench"}, read_timeout_seconds=CALL_TIMEOUT_S)
        if not result.is_error:
            spec.handle_set = True
            return
        if "nats_unavailable" not in json.dumps(result.structured_content) or time.monotonic() > deadline:
            raise BenchError(f"{spec.name}: warp_handle_set failed: {_text(result)[:300]}")
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------------------------------------
# The grid


@dataclass
class Cell:
    label: str
    server: str
    mode: str
    tool: str
    width: int
    """1: sequential; IN_FLIGHT: 10 in flight."""
    baseline: str | None = None
    target: float | None = None
    samples: list[Sample] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [s.rate for s in self.samples]

    @property
    def key(self) -> str:
        return f"{self.label} | {self.mode} | {'seq' if self.width == 1 else f'{self.width} in flight'}"


def make_specs(token: str) -> dict[str, Spec]:
    """The servers; the API-key ones (token None here) get the key once it exists: they need none to start."""
    api_key = None
    specs = [
        Spec("echo", "echo"),
        Spec("echo+token", "echo", token=token),
        Spec("echo, serve_cmd socket", "echo", prebound=True),
        Spec("nats-mcp dev", "nats-mcp", insecure=True),
        Spec("nats-mcp key", "nats-mcp", token=api_key),
        Spec("nats-mcp dev, nodelay", "nats-mcp", insecure=True, nodelay=True),
        Spec("nats-mcp key, nodelay", "nats-mcp", token=api_key, nodelay=True),
        Spec("nats-mcp key, nodelay, no audit", "nats-mcp", token=api_key, nodelay=True, audit=False),
    ]
    return {spec.name: spec for spec in specs}


def make_cells() -> list[Cell]:
    cells: list[Cell] = []
    for mode in MODES:
        for width in (1, IN_FLIGHT):
            a = Cell("a. echo, no auth", "echo", mode, ECHO_TOOL, width)
            b = Cell("b. echo, bearer (static token)", "echo+token", mode, ECHO_TOOL, width)
            cells += [a, b]
            cells.append(Cell("c. nats-mcp --insecure-dev, list", "nats-mcp dev", mode, LIST_TOOL, width, a.key, 0.8))
            cells.append(Cell("d. nats-mcp API key, list", "nats-mcp key", mode, LIST_TOOL, width, b.key, 0.8))
            cells.append(Cell("c'. as c + TCP_NODELAY", "nats-mcp dev, nodelay", mode, LIST_TOOL, width, a.key, 0.8))
            cells.append(Cell("d'. as d + TCP_NODELAY", "nats-mcp key, nodelay", mode, LIST_TOOL, width, b.key, 0.8))
            cells.append(
                Cell("(ctx) echo, socket as serve_cmd", "echo, serve_cmd socket", mode, ECHO_TOOL, width, a.key)
            )
            if mode == "auto":
                cells.append(
                    Cell("(ctx) d' without audit", "nats-mcp key, nodelay, no audit", mode, LIST_TOOL, width, b.key)
                )
                cells.append(Cell("(ctx) d, warp_channels_send", "nats-mcp key", mode, SEND_TOOL, width, b.key))
                cells.append(
                    Cell("(ctx) d', warp_channels_send", "nats-mcp key, nodelay", mode, SEND_TOOL, width, b.key)
                )
    return cells


def arguments_of(tool: str) -> dict[str, Any]:
    if tool == ECHO_TOOL:
        return {"text": MESSAGE}
    if tool == SEND_TOOL:
        return {"channel": SEND_CHANNEL, "message": MESSAGE}
    return {}


async def measure(plan: Plan, specs: dict[str, Spec], cells: list[Cell]) -> dict[str, Any]:
    """Connect a session per (server, mode), warm up, sample every cell ``plan.rounds`` times round-robin (into
    ``cell.samples``), then profile d'. Returns the profile."""
    clients: dict[tuple[str, str], Client] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name, mode in sorted({(c.server, c.mode) for c in cells}):
            clients[(name, mode)] = await stack.enter_async_context(session(specs[name], mode))
        calls: dict[str, Call] = {}
        for cell in cells:
            client, spec = clients[(cell.server, cell.mode)], specs[cell.server]
            if cell.tool == SEND_TOOL and not spec.handle_set:
                await set_handle(client, spec)
            calls[cell.key] = caller(client, cell.tool, arguments_of(cell.tool), f"{cell.server} ({cell.mode})")
        for cell in cells:
            for _ in range(plan.warmup):
                await calls[cell.key]()
        for r in range(plan.rounds):
            shift = r * len(cells) // plan.rounds
            for cell in cells[shift:] + cells[:shift]:
                fn = calls[cell.key]
                pid = specs[cell.server].process.pid  # type: ignore[union-attr]
                cell.samples.append(await sample(fn, plan.sample_s, cell.width, pid))
            print(f"  round {r + 1}/{plan.rounds} done", flush=True)
        profiled = "nats-mcp key, nodelay"
        return await profile(plan, specs[profiled], clients[(profiled, "auto")])


# ------------------------------------------------------------------------------------------------
# The profile

PROBES = (
    ("uvicorn: HTTP parsing (H11Protocol.data_received)", "uvicorn/protocols/http/h11_impl.py", "data_received"),
    ("uvicorn: the ASGI app, all of a request below (run_asgi)", "uvicorn/protocols/http/h11_impl.py", "run_asgi"),
    ("  SDK bearer auth (BearerAuthBackend.authenticate)", "mcp/server/auth/middleware/bearer_auth.py", "authenticate"),
    ("    nats-mcp GatewayVerifier.verify_token", "nats_mcp/transports/http/app.py", "verify_token"),
    ("      Guard.authenticate (address filter, lockout, provider)", "nats_mcp/security/guard.py", "authenticate"),
    ("        ApiKeys.get: KV get of the key record", "nats_mcp/security/authn/apikeys.py", "get"),
    ("        ApiKeyRecord.decode", "nats_mcp/security/authn/apikeys.py", "decode"),
    ("        ApiKeys._matches (SHA-256, cached-hash compare)", "nats_mcp/security/authn/apikeys.py", "_matches"),
    ("  SDK MCP handling (StreamableHTTPSessionManager.__call__)", "mcp/server/streamable_http_manager.py", "__call__"),
    ("    SDK dispatch: validation, the handler, the result's wire form", "mcp/server/runner.py", "_on_request"),
    ("      nats-mcp call_tool (guard, tool, audit record)", "nats_mcp/api/server.py", "call_tool"),
    ("        Guard.call (limits, size/depth, policy, audit)", "nats_mcp/security/guard.py", "call"),
    ("          ToolTable.call (validate, run channels_list, render)", "nats_mcp/api/server.py", "call"),
    ("            gateway_caller.caller (principal -> agent, heartbeat)", "nats_mcp/transports/http/app.py", "caller"),
    ("          AuditLog.record (redact, hash-chain seal, queue)", "nats_mcp/security/audit/log.py", "record"),
    ("background: AuditLog._drain (audit records -> stream, ack)", "nats_mcp/security/audit/log.py", "_drain"),
    ("background: nats-py flusher (writes to NATS)", "nats/aio/client.py", "_flusher"),
    ("background: nats-py read loop (replies, acks)", "nats/aio/client.py", "_read_loop"),
)
"""(what, file, function): CPU per call of these functions, cumulative (with what they call). The profiler's timer
is the main thread's CPU clock, so time a coroutine spends suspended, or the process spends preempted, is not in it."""


def probe_costs(stats: pstats.Stats, calls: int) -> list[dict[str, Any]]:
    raw: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    out = []
    for what, file, name in PROBES:
        cum = sum(v[3] for (f, _line, n), v in raw.items() if n == name and f.endswith(file))
        out.append({"what": what, "ms_per_call": 1e3 * cum / calls})
    return out


async def profile(plan: Plan, spec: Spec, client: Client) -> dict[str, Any]:
    """cProfile (main-thread CPU clock) of the d' server around a sequential and a 10-in-flight loop of list calls."""
    out = RESULTS / "http.prof"
    out.unlink(missing_ok=True)
    assert spec.pid_file is not None and spec.process is not None
    pid = int(spec.pid_file.read_text())
    list_call = caller(client, LIST_TOOL, {}, f"{spec.name} (profiled)")
    calls = 0

    async def call() -> object:
        nonlocal calls
        calls += 1
        return await list_call()

    os.kill(pid, signal.SIGUSR1)
    await call()  # answered only after the handler enabled the profiler
    cpu0, started = cpu_s(pid), time.perf_counter()
    seq_rate = await sequential(call, plan.profile_s) / (time.perf_counter() - started)
    middle = time.perf_counter()
    conc = await in_flight(call, plan.profile_s) / (time.perf_counter() - middle)
    elapsed, cpu = time.perf_counter() - started, cpu_s(pid) - cpu0
    os.kill(pid, signal.SIGUSR2)
    await list_call()  # answered only after the profile was written
    if not out.exists():
        raise BenchError(f"the profiled server wrote no {out}")
    stats = pstats.Stats(str(out))
    text, entries = top_cumulative(stats, TOP)
    buckets = time_buckets(stats)
    seconds = {k: t for k, t in buckets.seconds.items() if k not in (IDLE, STARTUP)}
    busy = sum(seconds.values())
    return {
        "file": str(out),
        "calls": calls,
        "elapsed_s": elapsed,
        "rates_under_profiler": {"sequential": seq_rate, "in_flight": conc},
        "process_cpu_ms_per_call": 1e3 * cpu / calls,
        "profiled_cpu_ms_per_call": 1e3 * busy / calls,
        "shares": {k: t / busy for k, t in sorted(seconds.items(), key=lambda kv: -kv[1]) if busy > 0},
        "modules_s": buckets.modules,
        "probes": probe_costs(stats, calls),
        "heaviest_own_time": [{"function": f, "ms_per_call": 1e3 * t / calls} for f, t in heaviest(stats, 10)],
        "top_cumulative": entries,
        "pstats_text": text,
    }


def print_profile(prof: dict[str, Any]) -> None:
    rates = prof["rates_under_profiler"]
    print(
        f"\nserver profile of d' (API key + TCP_NODELAY), auto mode: {prof['calls']} list calls in "
        f"{prof['elapsed_s']:.1f} s ({rates['sequential']:.0f} seq, {rates['in_flight']:.0f} 10-in-flight calls/s "
        f"under cProfile); process CPU {prof['process_cpu_ms_per_call']:.2f} ms/call, of it "
        f"{prof['profiled_cpu_ms_per_call']:.2f} ms/call in profiled Python on the event loop thread.\n"
        "The profiler inflates Python time: read shares, not absolutes."
    )
    for name, share in prof["shares"].items():
        if share >= 0.02:
            inside = sorted(prof["modules_s"].get(name, {}).items(), key=lambda kv: -kv[1])[:5]
            detail = f" ({', '.join(m for m, _ in inside)})" if inside else ""
            print(f"  {share * 100:5.1f} %  {name}{detail}")
    print("CPU per call of named steps (cumulative: a step includes the ones indented under it):")
    for probe in prof["probes"]:
        print(f"  {probe['ms_per_call']:7.3f} ms  {probe['what']}")
    print("heaviest functions by own time:")
    for entry in prof["heaviest_own_time"]:
        print(f"  {entry['ms_per_call']:7.3f} ms  {entry['function']}")
    print(f"top {TOP} by cumulative time:\n{prof['pstats_text']}")


# ------------------------------------------------------------------------------------------------
# The report


@dataclass
class Line:
    measure: str
    mode: str
    load: str
    median: float
    min: float
    max: float
    server_cpu_ms: float
    """Median server-process CPU per call."""
    client_cpu_ms: float
    """Median client (this process) CPU per call."""
    baseline: str | None = None
    baseline_median: float | None = None
    ratio: float | None = None
    """Median over median of the baseline."""
    paired: float | None = None
    """Median of the per-round ratios (cell / baseline sampled in the same round): what the target is judged on."""
    target: str | None = None
    met: bool | None = None


def lines_of(cells: list[Cell]) -> list[Line]:
    by_key = {cell.key: cell for cell in cells}
    out = []
    for cell in cells:
        r = row(cell.key, "calls/s", cell.rates)
        line = Line(
            cell.label,
            cell.mode,
            "seq" if cell.width == 1 else f"{cell.width} in flight",
            r.median,
            r.min,
            r.max,
            statistics.median(s.server_ms for s in cell.samples),
            statistics.median(s.client_ms for s in cell.samples),
        )
        if cell.baseline is not None:
            base = by_key[cell.baseline]
            line.baseline, line.baseline_median = base.label, statistics.median(base.rates)
            line.ratio = line.median / line.baseline_median
            line.paired = statistics.median(x / y for x, y in zip(cell.rates, base.rates, strict=True))
            if cell.target is not None:
                line.target, line.met = f">= {cell.target:.1f}x", line.paired >= cell.target
        out.append(line)
    return out


def print_table(lines: list[Line]) -> None:
    print(
        f"\n{'measure':<36} {'mode':<6} {'load':<12} {'calls/s':>7} {'min..max':>11} {'base':>5} {'ratio':>6}"
        f" {'paired':>6} {'target':>13} {'srv ms':>6} {'cli ms':>6}"
    )
    for m in MODES:
        for load in ("seq", f"{IN_FLIGHT} in flight"):
            for x in (x for x in lines if x.mode == m and x.load == load):
                base = f"{x.baseline_median:5.0f}" if x.baseline_median is not None else f"{'-':>5}"
                ratio = f"{x.ratio:5.2f}x" if x.ratio is not None else f"{'':>6}"
                paired = f"{x.paired:5.2f}x" if x.paired is not None else f"{'':>6}"
                verdict = "" if x.target is None else f"{x.target} {'ok' if x.met else 'MISSED'}"
                spread = f"{x.min:.0f}..{x.max:.0f}"
                print(
                    f"{x.measure:<36} {x.mode:<6} {x.load:<12} {x.median:7.0f} {spread:>11} {base} {ratio} {paired}"
                    f" {verdict:>13} {x.server_cpu_ms:6.2f} {x.client_cpu_ms:6.2f}"
                )
    print(
        f"(calls/s: median of the rounds; base: the median of a for c, c' and the echo context row, of b for d, d'\n"
        " and the other context rows; ratio: of the medians; paired: median of the per-round ratios, which the\n"
        f" target is judged on; auto = {MODES['auto']}, legacy = {MODES['legacy']}; 10 in flight = 10 tasks on one"
        " client session;\n srv/cli ms: CPU per call of the server process / of this client process)"
    )


async def run(plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        base = Path(tmp)
        RESULTS.mkdir(parents=True, exist_ok=True)
        with NatsServer(base / "nats").start() as nats:
            print(f"nats-server {nats.url}", flush=True)
            specs = make_specs(secrets.token_urlsafe(24))
            cells = make_cells()
            try:
                started = time.perf_counter()
                for spec in specs.values():
                    launch(spec, base, nats.url)
                api_key = await asyncio.to_thread(create_api_key, base, nats.url)  # while the servers start
                for spec in specs.values():
                    if spec.kind == "nats-mcp" and not spec.insecure:
                        spec.token = api_key
                await wait_listening(list(specs.values()))
                print(
                    f"{len(specs)} servers listening after {time.perf_counter() - started:.1f} s; "
                    f"{len(cells)} cells x {plan.rounds} rounds x {plan.sample_s} s",
                    flush=True,
                )
                prof = await measure(plan, specs, cells)
            except BaseException:
                log_tails(list(specs.values()))
                raise
            finally:
                stop_servers(list(specs.values()))
    return {"cells": cells, "profile": prof}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few, short samples (under a minute)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    try:
        result = asyncio.run(run(plan))
    except BaseException as exc:
        reason = _bench_error(exc)
        if reason is None and isinstance(exc, BaseExceptionGroup):
            # The SDK nests one group per open session: name what went wrong instead of 14 levels of groups.
            import traceback

            for leaf in _leaves(exc):
                traceback.print_exception(leaf)
            sys.exit(f"bench/http_tools.py: failed: {'; '.join(repr(leaf) for leaf in _leaves(exc))[:1000]}")
        if reason is None:
            raise
        sys.exit(f"bench/http_tools.py: {reason}")
    cells: list[Cell] = result["cells"]
    lines = lines_of(cells)
    print_profile(result["profile"])
    print_table(lines)
    report = {
        "plan": asdict(plan),
        "quick": args.quick,
        "elapsed_s": time.perf_counter() - started,
        "environment": {
            "python": platform.python_version(),
            "mcp": version("mcp"),
            "uvicorn": version("uvicorn"),
            "machine": platform.machine(),
            "cpus": len(os.sched_getaffinity(0)),
            "load_avg": os.getloadavg(),
        },
        "in_flight": IN_FLIGHT,
        "rows": [asdict(x) for x in lines],
        "samples": {cell.key: [asdict(x) for x in cell.samples] for cell in cells},
        "profile": {k: v for k, v in result["profile"].items() if k != "pstats_text"},
    }
    (RESULTS / "http.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {RESULTS / 'http.json'} in {report['elapsed_s']:.1f} s")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _bench_error(exc: BaseException) -> BaseException | None:
    return find_error(exc, (BenchError,))


if __name__ == "__main__":
    main()
