"""Benchmark boundary of bench/scale.py's network part: many concurrent agents over streamable HTTP and over gRPC, and
what the two servers hold in memory as registered agents, sessions and load grow (curves 4 and 5 of scale.py).

Run by bench/scale.py, not on its own. The HTTP gateway is ``http_tools.launch``'s (`serve --transport http`, one API
key from ``nats-mcp keys create``, namespace ``bench``); the gRPC server is grpc_tools' (`serve --transport grpc`,
mutual TLS with the ``nats-mcp certs init`` certificates and the development agent policy, namespace
``bench-grpc``). Both with ``http_tools.UNLIMITED`` rate limits. Every agent is its own SDK session (HTTP: its own
httpx client and ``x-nats-mcp-agent`` header; gRPC: its own channel, ``Session`` stream and agent metadata), sets
its handle once, then calls ``warp_channels_send`` to one shared channel back to back for each window. One API key
serves every HTTP agent, as in a gateway deployment: its verification is cached for 60 s, so whatever the gateway
does when that cache lapses under load (re-deriving scrypt) falls inside the HTTP windows; the server's RSS after
every window is kept to show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import grpc_tools
import http_tools
import httpx2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from scale_procs import Memory, cpu_s, rss_mib
from stdio_tools import register_agents
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import wait_for

from nats_mcp.transports.grpc.client import grpc_transport, open_channel
from nats_mcp.transports.http.app import AGENT_HEADER

if TYPE_CHECKING:
    from nats_mcp.config.settings import Settings


class GatewayPlan(Protocol):
    """What the gateway curves read of scale.Plan."""

    @property
    def concurrency(self) -> tuple[int, ...]: ...
    @property
    def memory_sessions(self) -> int: ...
    @property
    def rounds(self) -> int: ...
    @property
    def window_s(self) -> float: ...


class Run(Protocol):
    """What the gateway curves use of scale.Run (declared here, so this module does not import its caller)."""

    plan: GatewayPlan
    base: Path
    url: str
    logs: dict[str, Path]
    memory: Memory
    pids: dict[str, int]

    def settings(self, namespace: str) -> Settings: ...


CHANNEL = "parallel-work"
SEND = "warp_channels_send"
MESSAGE = "benchmark message: " + "x" * 80
HTTP_NAMESPACE = "bench"
"""The namespace ``http_tools.launch`` gives its servers."""
GRPC_NAMESPACE = "bench-grpc"
MEMORY_AGENTS = 1_000
START_TIMEOUT_S = 60.0


@dataclass
class Window:
    """One sample of one point: ``agents`` agents calling back to back for a fixed time."""

    agents: int
    calls: int
    elapsed_s: float
    latencies_ms: list[float]
    server_cpu_s: float
    client_cpu_s: float
    rss_mib: float
    """The server's RSS right after the window."""

    @property
    def rate(self) -> float:
        return self.calls / self.elapsed_s


@dataclass
class Gateway:
    name: str
    label: str
    note: str
    pid: int
    calls: list[http_tools.Call] = field(default_factory=list)
    """One ``warp_channels_send`` caller per agent session."""
    windows: dict[int, list[Window]] = field(default_factory=dict)


async def window(calls: list[http_tools.Call], seconds: float, pid: int) -> Window:
    """Every agent of ``calls`` calling back to back for ``seconds`` (each ends its last call)."""
    await asyncio.gather(*(c() for c in calls))  # untimed: reopens connections the client let go while idle
    latencies: list[float] = []
    server0, client0, start = cpu_s(pid), time.process_time(), time.perf_counter()

    async def agent(fn: http_tools.Call) -> int:
        n = 0
        while True:
            began = time.perf_counter()
            await fn()
            ended = time.perf_counter()
            latencies.append((ended - began) * 1e3)
            n += 1
            if ended - start >= seconds:
                return n

    counts = await asyncio.gather(*(agent(c) for c in calls))
    elapsed = time.perf_counter() - start
    return Window(
        len(calls), sum(counts), elapsed, latencies, cpu_s(pid) - server0, time.process_time() - client0, rss_mib(pid)
    )


# ------------------------------------------------------------------------------------------------
# Sessions


@contextlib.asynccontextmanager
async def http_agent(url: str, key: str, agent: str) -> AsyncIterator[Client]:
    """An SDK session over streamable HTTP with the API key, acting as ``agent`` (tools listed, as a client does)."""
    headers = {"Authorization": f"Bearer {key}", AGENT_HEADER: agent}
    async with (
        http_tools.http_client(headers) as http,
        Client(streamable_http_client(url, http_client=http), mode="auto") as client,
    ):
        await client.list_tools()
        yield client


@contextlib.asynccontextmanager
async def grpc_agent(port: int, certs: Path, agent: str) -> AsyncIterator[Client]:
    """An SDK session over its own gRPC channel and ``Session`` stream (mTLS as ``agent-1``), acting as ``agent``."""
    target = dataclasses.replace(grpc_tools.grpc_target(port, certs), agent=agent)
    async with Client(grpc_transport(target), mode="auto") as client:  # type: ignore[arg-type]
        await client.list_tools()
        yield client


Opener = Callable[[str], contextlib.AbstractAsyncContextManager[Client]]


async def open_agents(
    stack: contextlib.AsyncExitStack, gateway: Gateway, opener: Opener, count: int, remember_at: int, run: Run
) -> None:
    """``count`` agent sessions, each setting its handle (its one call); RSS once ``remember_at`` are open."""
    started = time.perf_counter()
    for i in range(count):
        agent = f"agent-{i}"
        client = await stack.enter_async_context(opener(agent))
        await http_tools.caller(client, "warp_handle_set", {"handle": agent}, f"{gateway.name} {agent}")()
        gateway.calls.append(
            http_tools.caller(client, SEND, {"channel": CHANNEL, "message": MESSAGE}, f"{gateway.name} {agent}")
        )
        if i + 1 == remember_at:
            run.memory.add(gateway.name, f"+{remember_at} sessions", gateway.pid)
    print(f"  {gateway.name}: {count} agent sessions open in {time.perf_counter() - started:.1f} s", flush=True)


# ------------------------------------------------------------------------------------------------
# Servers


async def http_healthy(port: int) -> bool:
    """``GET /healthz`` answers 200: listening, and connected to NATS."""
    async with httpx2.AsyncClient(timeout=5) as client:
        return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200


async def grpc_healthy(port: int, certs: Path) -> bool:
    """``grpc.health.v1`` says SERVING (it follows the server's NATS connection)."""
    channel = open_channel(grpc_tools.grpc_target(port, certs))
    try:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
    finally:
        await channel.close()


async def measure(run: Run) -> dict[str, Any]:
    """Curves 4 and 5: start both servers, take their idle RSS, register agents and open sessions, then sample."""
    plan, base = run.plan, run.base
    most = max(plan.concurrency)
    certs = await asyncio.to_thread(grpc_tools.make_certs, base)
    policy = base / "grpc-policy.yaml"
    policy.write_text(grpc_tools.POLICY)
    grpc_project = base / "grpc-project"
    grpc_project.mkdir()
    env = isolated_env(
        grpc_project,
        NATS_URL=run.url,
        NATS_MCP_NAMESPACE=GRPC_NAMESPACE,
        NATS_MCP_GRPC_PORT_FILE=str(base / "scale-grpc.port"),
        NATS_MCP_SECURITY_POLICY_FILE=str(policy),
        **http_tools.UNLIMITED,
    )
    argv = [
        nats_mcp_exe(),
        "serve",
        "--transport",
        "grpc",
        "--port",
        "0",
        "--tls-cert",
        str(certs / "server.pem"),
        "--tls-key",
        str(certs / "server-key.pem"),
        "--client-ca",
        str(certs / "ca.pem"),
    ]
    spec = http_tools.Spec("scale-http", "nats-mcp")
    processes = []
    try:
        http_tools.launch(spec, base, run.url)
        assert spec.process is not None and spec.log is not None
        processes.append(spec.process)
        run.logs["scale-http"] = spec.log
        served = grpc_tools.start("scale-grpc", argv, env, base, base / "scale-grpc.port")
        processes.append(served.process)
        run.logs["scale-grpc"] = served.log
        key = await asyncio.to_thread(http_tools.create_api_key, base, run.url)  # while the servers start
        await http_tools.wait_listening([spec])
        await grpc_tools.wait_port(served)
        await wait_for(
            lambda: http_healthy(spec.port),
            START_TIMEOUT_S,
            message="the HTTP gateway never got healthy",
            ignore=(httpx2.TransportError,),
        )
        await wait_for(
            lambda: grpc_healthy(served.port, certs), START_TIMEOUT_S, message="the gRPC server never got healthy"
        )
        http = Gateway(
            "HTTP gateway",
            "HTTP agents",
            "one API key; per agent an SDK session and x-nats-mcp-agent",
            spec.process.pid,
        )
        grpc = Gateway(
            "gRPC server",
            "gRPC agents",
            "mTLS (agent-1 certificate); per agent a channel, Session stream and agent metadata",
            served.process.pid,
        )
        run.pids |= {"scale-http": http.pid, "scale-grpc": grpc.pid}
        for gateway in (http, grpc):
            run.memory.add(gateway.name, "idle", gateway.pid)
        async with contextlib.AsyncExitStack() as stack:
            probe = await stack.enter_async_context(http_agent(spec.url, key, "probe"))
            await register_agents(run.settings(HTTP_NAMESPACE), MEMORY_AGENTS)

            async def counted() -> bool:
                found = await http_tools.caller(probe, "warp_registry_discover", {"limit": 1}, "probe")()
                return int((found.structured_content or {}).get("total", 0)) >= MEMORY_AGENTS

            await wait_for(counted, 60, message=f"the HTTP gateway never counted {MEMORY_AGENTS} agents")
            run.memory.add(http.name, f"+{MEMORY_AGENTS:,} agents (1 session)", http.pid)
            sessions = max(most, plan.memory_sessions)
            await open_agents(stack, http, lambda a: http_agent(spec.url, key, a), sessions, plan.memory_sessions, run)
            await open_agents(
                stack, grpc, lambda a: grpc_agent(served.port, certs, a), sessions, plan.memory_sessions, run
            )
            for r in range(plan.rounds):
                for n in plan.concurrency:
                    for gateway in (http, grpc) if (r + n) % 2 else (grpc, http):  # neither always goes first
                        w = await window(gateway.calls[:n], plan.window_s, gateway.pid)
                        gateway.windows.setdefault(n, []).append(w)
                        if r == plan.rounds - 1 and n == most:
                            run.memory.add(gateway.name, f"after {most} agents", gateway.pid)
                print(f"  round {r + 1}/{plan.rounds} done", flush=True)
    finally:
        grpc_tools.stop(processes)
    gateways = [http, grpc]
    return {
        "rows": [r for g in gateways for r in rows(g)],
        "curves": {f"{g.name.split()[0].lower()}_agents": curve(g) for g in gateways},
    }


# ------------------------------------------------------------------------------------------------
# Report


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def point(windows: list[Window]) -> dict[str, Any]:
    rates = [w.rate for w in windows]
    latencies = [ms for w in windows for ms in w.latencies_ms]
    elapsed = sum(w.elapsed_s for w in windows)
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "n": len(rates),
        "calls": sum(w.calls for w in windows),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "server_cpu_cores": sum(w.server_cpu_s for w in windows) / elapsed,
        "client_cpu_cores": sum(w.client_cpu_s for w in windows) / elapsed,
        "rss_mib_after": [round(w.rss_mib, 1) for w in windows],
    }


def rows(gateway: Gateway) -> list[dict[str, Any]]:
    out = []
    first_n = min(gateway.windows)
    first = point(gateway.windows[first_n])["median"]
    for n, windows in sorted(gateway.windows.items()):
        p = point(windows)
        base = n != first_n
        out.append(
            {
                "measure": f"{gateway.label}, {SEND}",
                "load": f"{n} agent{'s' if n > 1 else ''}",
                "unit": "calls/s",
                "median": p["median"],
                "min": p["min"],
                "max": p["max"],
                "baseline": f"{first_n} agent" if base else None,
                "baseline_median": first if base else None,
                "ratio": p["median"] / first if base else None,
                "target": None,
                "met": None,
                "n": p["n"],
                "p50_ms": p["p50_ms"],
                "p95_ms": p["p95_ms"],
                "server_cpu_cores": p["server_cpu_cores"],
                "client_cpu_cores": p["client_cpu_cores"],
                "rss_mib_after": p["rss_mib_after"],
                "note": gateway.note,
            }
        )
    return out


def curve(gateway: Gateway) -> dict[str, Any]:
    points = []
    first = point(gateway.windows[min(gateway.windows)])["median"]
    for n, windows in sorted(gateway.windows.items()):
        p = point(windows)
        points.append({"x": n, **p, "vs_first": p["median"] / first})
    return {
        "measure": f"{gateway.label}, {SEND}",
        "note": gateway.note,
        "x": "concurrent agents",
        "unit": "calls/s",
        "points": points,
    }


def verdict(points: list[dict[str, Any]]) -> str:
    """Whether aggregate throughput holds at the largest concurrency, against its peak."""
    peak = max(points, key=lambda p: p["median"])
    last = points[-1]
    share = last["median"] / peak["median"]
    words = "holds" if share >= 0.8 else ("sags" if share >= 0.5 else "collapses")
    return (
        f"{words} at {last['x']} agents: {last['median']:.0f} calls/s, {share:.0%} of the peak "
        f"({peak['median']:.0f} at {peak['x']}); p95 {last['p95_ms']:.0f} ms vs {points[0]['p95_ms']:.1f} ms at "
        f"{points[0]['x']}; server CPU {last['server_cpu_cores']:.2f} cores, this client "
        f"{last['client_cpu_cores']:.2f}"
    )


def print_concurrency(result: dict[str, Any]) -> None:
    print(
        f"\n{'concurrent agents, ' + SEND:<48} {'agents':>6} {'calls/s':>8} {'min..max':>11} {'ratio':>7}"
        f" {'p50 ms':>7} {'p95 ms':>7} {'srv CPU':>7} {'cli CPU':>7}  server RSS MiB after each window"
    )
    for name, c in result["curves"].items():
        for p in c["points"]:
            spread = f"{p['min']:.0f}..{p['max']:.0f}"
            print(
                f"{name:<48} {p['x']:>6} {p['median']:8.0f} {spread:>11} {p['vs_first']:6.2f}x {p['p50_ms']:7.1f}"
                f" {p['p95_ms']:7.1f} {p['server_cpu_cores']:7.2f} {p['client_cpu_cores']:7.2f}"
                f"  {' '.join(f'{m:.0f}' for m in p['rss_mib_after'])}"
            )
    for name, c in result["curves"].items():
        print(f"{name}: throughput {verdict(c['points'])}")
    print(
        "(calls/s: aggregate of all agents, median of the windows; ratio: vs 1 agent; p50/p95: per call, all\n"
        " windows pooled; CPU: cores used on average by the server process and by this client process, which runs\n"
        " every agent — on 2 cores shared by both, a client near 1 core is the client's ceiling, not the server's)"
    )
