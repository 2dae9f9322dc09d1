"""Benchmark boundary of `nats-mcp serve --transport grpc`: tool calls/s over mTLS gRPC against a bare grpc.aio echo.

(Not named bench/grpc.py: a script run from bench/ has bench/ first on sys.path, so a bench/grpc.py would shadow
the ``grpc`` package for every script there.)

    .venv/bin/python bench/grpc_tools.py [--quick] [--rounds N] [--sample-s S] [--baseline SRC]

One run, one real nats-server, every server in its own process, all sampled alternately (round-robin, the order
rotated each round), each sample a fixed time of calls, sequentially and with 50 calls in flight:

a. a bare grpc.aio unary echo (generic handler, bytes in and out, no protobuf) with mutual TLS, the same
   certificates (``nats-mcp certs init``): the payload is the JSON-RPC ``tools/call`` request the SDK sends;
   one channel, 50 in flight = 50 concurrent unary calls on it;
b. ``nats-mcp serve --transport grpc`` with mutual TLS (client certificate ``agent-1``, SPIFFE identity mapped to
   an agent role by a policy file), ``warp_channels_list`` (no NATS round trip) through the SDK ``mcp.Client`` over
   ``nats_mcp.transports.grpc.client.grpc_transport`` (one ``Session`` stream) — target >= 0.6x a;
   50 in flight = 50 asyncio tasks sharing that one client session (one stream);
b2. the same server, ``Call`` RPCs with a prebuilt 2026-07-28 ``tools/call`` frame (no SDK client: the server's
   cost next to the echo's, which has no MCP client either); 50 in flight = 50 concurrent calls on one channel;
b3. the same server, Google's typed ``model_context_protocol.Mcp/CallTool`` (unary protobuf);
c. ``nats-mcp serve --transport http`` with an API key (plaintext loopback; a credential checked on every request,
   the nearest HTTP kind to per-call mTLS identity), the same tool through the SDK client over
   ``streamable_http_client`` — b target >= 2x c;
context: c with ``--insecure-dev`` (no authentication at all).

With ``--baseline SRC`` (a ``src`` directory of another checkout, e.g. ``git archive main src | tar -x -C DIR``) a
second gRPC server runs that code (``PYTHONPATH``) and b, b2 and b3 are measured against it too (``(base) ...``
cells, paired in the same rounds): a change's effect without the noise of two runs.

Both MCP sessions negotiate the newest revision (``mode="auto"``). The nats-mcp servers run with the rate limits
raised. Targets are judged on the paired ratio (median of per-round ratios). Prints a table; writes
bench/results/grpc.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from http_tools import (  # noqa: E402
    UNLIMITED,
    BenchError,
    Call,
    Sample,
    Spec,
    caller,
    create_api_key,
    sample,
    session,
)
from http_tools import launch as launch_http  # noqa: E402
from mcp import Client  # noqa: E402
from mcp_grpc_transport_proto import mcp_messages_pb2 as typed_pb  # noqa: E402
from mcp_grpc_transport_proto import mcp_pb2_grpc as typed_grpc  # noqa: E402
from tests.support.env import isolated_env, nats_mcp_exe  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402

from nats_mcp.security.dev.certs import agent_policy  # noqa: E402
from nats_mcp.transports.grpc.client import CALL_METHOD, GrpcTarget, grpc_transport, open_channel  # noqa: E402
from nats_mcp.transports.grpc.gen.transport_pb2 import Frame  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LIST_TOOL = "warp_channels_list"
IN_FLIGHT = 50
MODE = "auto"
START_TIMEOUT_S = 60.0
CLIENT = "agent-1"
TRUST_DOMAIN = "spiffe://nats-mcp.dev"
POLICY = agent_policy(f"{TRUST_DOMAIN}/agent/*")
ECHO_METHOD = "/bench.Echo/Echo"
PAYLOAD = json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": LIST_TOOL, "arguments": {}}}
).encode()


@dataclass(frozen=True)
class Plan:
    rounds: int
    sample_s: float
    warmup: int


QUICK = Plan(rounds=3, sample_s=0.3, warmup=20)
FULL = Plan(rounds=11, sample_s=1.5, warmup=200)


ECHO_SERVER = """
import asyncio, sys, grpc
cert, key, ca = (open(p, "rb").read() for p in sys.argv[1:4])
port_file = sys.argv[4]
async def echo(request, context):
    return request
async def main():
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    with open(port_file, "w") as f:
        f.write(f"{port}\\n")
    await server.wait_for_termination()
asyncio.run(main())
"""
"""A bare grpc.aio unary echo with mutual TLS: ``python -c ECHO_SERVER cert key ca port_file``."""


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    port_file: Path
    log: Path
    port: int = 0


def start(name: str, argv: list[str], env: dict[str, str], base: Path, port_file: Path) -> Proc:
    log = base / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(base))
    return Proc(name, process, port_file, log)


async def wait_port(proc: Proc) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (proc.port_file.exists() and proc.port_file.read_text().strip()):
        if proc.process.poll() is not None:
            raise BenchError(f"{proc.name} exited with {proc.process.returncode}: {proc.log.read_text()[-1500:]}")
        if time.monotonic() > deadline:
            raise BenchError(f"{proc.name} wrote no port file within {START_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.02)
    proc.port = int(proc.port_file.read_text())


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.terminate()
    for p in processes:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def make_certs(base: Path) -> Path:
    certs = base / "certs"
    done = subprocess.run(
        [nats_mcp_exe(), "certs", "init", str(certs)],
        env=isolated_env(base / "certs-home"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"nats-mcp certs init failed: {done.stderr.strip()[-500:]}")
    return certs


# ------------------------------------------------------------------------------------------------
# Clients


@contextlib.asynccontextmanager
async def echo_caller(port: int, certs: Path) -> AsyncIterator[Call]:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / "clients" / f"{CLIENT}-key.pem").read_bytes(),
        certificate_chain=(certs / "clients" / f"{CLIENT}.pem").read_bytes(),
    )
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        method = channel.unary_unary(ECHO_METHOD)

        async def call() -> object:
            reply = await method(PAYLOAD, timeout=30)
            if reply != PAYLOAD:
                raise BenchError("the echo answered something else")
            return reply

        await call()
        yield call


def grpc_target(port: int, certs: Path) -> GrpcTarget:
    return GrpcTarget(
        f"127.0.0.1:{port}",
        ca_file=certs / "ca.pem",
        cert_file=certs / "clients" / f"{CLIENT}.pem",
        key_file=certs / "clients" / f"{CLIENT}-key.pem",
    )


ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
MODERN_CALL = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": LIST_TOOL, "arguments": {}, "_meta": ENVELOPE},
    }
).encode()


@contextlib.asynccontextmanager
async def raw_call_caller(port: int, certs: Path) -> AsyncIterator[Call]:
    """``Call`` RPCs with a prebuilt 2026-07-28 request frame: the server's cost without the SDK client's."""
    channel = open_channel(grpc_target(port, certs))
    method = channel.unary_stream(
        CALL_METHOD, request_serializer=Frame.SerializeToString, response_deserializer=Frame.FromString
    )
    request = Frame(json=MODERN_CALL)

    async def call() -> object:
        last = b""
        async for answer in method(request, timeout=30):
            last = answer.json
        if b'"isError":false' not in last:
            raise BenchError(f"the Call answered {last[:200]!r}")
        return last

    try:
        await call()
        yield call
    finally:
        await channel.close()


@contextlib.asynccontextmanager
async def typed_caller(port: int, certs: Path) -> AsyncIterator[Call]:
    """Google's typed ``model_context_protocol.Mcp/CallTool`` (unary protobuf)."""
    channel = open_channel(grpc_target(port, certs))
    stub = typed_grpc.McpStub(channel)
    request = typed_pb.CallToolRequest(request=typed_pb.CallToolRequest.Request(name=LIST_TOOL))

    async def call() -> object:
        answer = await stub.CallTool(request, timeout=30)
        if answer.is_error:
            raise BenchError(f"the typed CallTool failed: {answer}")
        return answer

    try:
        await call()
        yield call
    finally:
        await channel.close()


@contextlib.asynccontextmanager
async def grpc_session(port: int, certs: Path) -> AsyncIterator[Client]:
    target = grpc_target(port, certs)
    async with Client(grpc_transport(target), mode=MODE) as client:  # type: ignore[arg-type]
        await client.list_tools()
        yield client


# ------------------------------------------------------------------------------------------------
# Cells and report


@dataclass
class Cell:
    label: str
    server: str
    width: int
    baselines: tuple[tuple[str, float | None], ...] = ()
    samples: list[Sample] = field(default_factory=list)

    @property
    def short(self) -> str:
        """``a``, ``b2``, ``ctx``, ``base b2``: how the ratio table names a cell."""
        if self.label.startswith("(base) "):
            return "base " + self.label.removeprefix("(base) ").split(".")[0]
        return self.label.split(".")[0] if not self.label.startswith("(") else "ctx"

    @property
    def key(self) -> str:
        return f"{self.label} | {'seq' if self.width == 1 else f'{self.width} in flight'}"

    @property
    def rates(self) -> list[float]:
        return [s.rate for s in self.samples]


def make_cells(baseline: bool = False) -> list[Cell]:
    cells: list[Cell] = []
    for width in (1, IN_FLIGHT):
        a = Cell("a. bare grpc.aio echo, mTLS", "echo", width)
        c = Cell("c. nats-mcp HTTP, API key", "http key", width)
        dev = Cell("(ctx) nats-mcp HTTP, --insecure-dev", "http dev", width)
        bases: list[Cell] = []
        if baseline:
            bases = [
                Cell("(base) b. gRPC, baseline source", "base grpc", width, ((a.key, None),)),
                Cell("(base) b2. Call, baseline source", "base grpc call", width, ((a.key, None),)),
                Cell("(base) b3. typed, baseline source", "base grpc typed", width, ((a.key, None),)),
            ]
        vs_base: list[tuple[tuple[str, float | None], ...]] = [((x.key, None),) for x in bases] or [(), (), ()]
        b = Cell("b. nats-mcp gRPC, mTLS", "grpc", width, ((a.key, 0.6), (c.key, 2.0), (dev.key, None), *vs_base[0]))
        raw = Cell("b2. gRPC Call, raw frames", "grpc call", width, ((a.key, 0.6), (c.key, 2.0), *vs_base[1]))
        typed = Cell("b3. gRPC typed CallTool", "grpc typed", width, ((a.key, 0.6), (c.key, 2.0), *vs_base[2]))
        cells += [a, b, raw, typed, *bases, c, dev]
    return cells


async def measure(plan: Plan, calls: dict[str, Call], pids: dict[str, int], cells: list[Cell]) -> None:
    for cell in cells:
        for _ in range(plan.warmup):
            await calls[cell.server]()
    for r in range(plan.rounds):
        shift = r * len(cells) // plan.rounds
        for cell in cells[shift:] + cells[:shift]:
            cell.samples.append(await sample(calls[cell.server], plan.sample_s, cell.width, pids[cell.server]))
        print(f"  round {r + 1}/{plan.rounds} done", flush=True)


def lines_of(cells: list[Cell]) -> list[dict[str, Any]]:
    by_key = {c.key: c for c in cells}
    out = []
    for cell in cells:
        line: dict[str, Any] = {
            "measure": cell.label,
            "short": cell.short,
            "load": "seq" if cell.width == 1 else f"{cell.width} in flight",
            "median": statistics.median(cell.rates),
            "min": min(cell.rates),
            "max": max(cell.rates),
            "server_cpu_ms": statistics.median(s.server_ms for s in cell.samples),
            "client_cpu_ms": statistics.median(s.client_ms for s in cell.samples),
            "vs": [],
        }
        for key, target in cell.baselines:
            base = by_key[key]
            paired = statistics.median(x / y for x, y in zip(cell.rates, base.rates, strict=True))
            line["vs"].append(
                {
                    "baseline": base.label,
                    "short": base.short,
                    "ratio": line["median"] / statistics.median(base.rates),
                    "paired": paired,
                    "target": target,
                    "met": None if target is None else paired >= target,
                }
            )
        out.append(line)
    return out


def print_table(lines: list[dict[str, Any]]) -> None:
    print(f"\n{'measure':<38} {'load':<12} {'calls/s':>7} {'min..max':>13} {'srv ms':>6} {'cli ms':>6}")
    for x in lines:
        spread = f"{x['min']:.0f}..{x['max']:.0f}"
        print(
            f"{x['measure']:<38} {x['load']:<12} {x['median']:7.0f} {spread:>13} {x['server_cpu_ms']:6.2f}"
            f" {x['client_cpu_ms']:6.2f}"
        )
    print(f"\n{'ratio':<64} {'medians':>7} {'paired':>7} {'target':>14}")
    for x in lines:
        for v in x["vs"]:
            what = f"{x['short']}/{v['short']} ({x['load']}) vs {v['baseline']}"
            verdict = "" if v["target"] is None else f">= {v['target']:.1f}x {'ok' if v['met'] else 'MISSED'}"
            print(f"{what:<64} {v['ratio']:6.2f}x {v['paired']:6.2f}x {verdict:>14}")
    print(
        f"(calls/s: median of the rounds; paired: median of per-round ratios, which targets are judged on;\n"
        f" {IN_FLIGHT} in flight: {IN_FLIGHT} tasks on one channel (a) or one MCP client session (b, c);"
        "\n srv/cli ms: CPU per call of the server process / of this process)"
    )


async def run(plan: Plan, baseline: Path | None = None) -> list[Cell]:
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        base = Path(tmp)
        RESULTS.mkdir(parents=True, exist_ok=True)
        with NatsServer(base / "nats").start() as nats:
            print(f"nats-server {nats.url}", flush=True)
            certs = await asyncio.to_thread(make_certs, base)
            policy = base / "policy.yaml"
            policy.write_text(POLICY)
            processes: list[subprocess.Popen[bytes]] = []
            http_specs = [Spec("http key", "nats-mcp"), Spec("http dev", "nats-mcp", insecure=True)]
            try:
                echo = start(
                    "echo",
                    [
                        sys.executable,
                        "-c",
                        ECHO_SERVER,
                        str(certs / "server.pem"),
                        str(certs / "server-key.pem"),
                        str(certs / "ca.pem"),
                        str(base / "echo.port"),
                    ],
                    {**os.environ},
                    base,
                    base / "echo.port",
                )
                processes.append(echo.process)
                project = base / "grpc-project"
                project.mkdir()
                env = isolated_env(
                    project,
                    NATS_URL=nats.url,
                    NATS_MCP_NAMESPACE="bench",
                    NATS_MCP_GRPC_PORT_FILE=str(base / "grpc.port"),
                    NATS_MCP_SECURITY_POLICY_FILE=str(policy),
                    **UNLIMITED,
                )
                served = start(
                    "grpc",
                    [
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
                    ],
                    env,
                    base,
                    base / "grpc.port",
                )
                processes.append(served.process)
                based: Proc | None = None
                if baseline is not None:
                    (base / "base-project").mkdir()
                    base_env = isolated_env(
                        base / "base-project",
                        NATS_URL=nats.url,
                        NATS_MCP_NAMESPACE="bench",
                        NATS_MCP_GRPC_PORT_FILE=str(base / "grpc-base.port"),
                        NATS_MCP_SECURITY_POLICY_FILE=str(policy),
                        PYTHONPATH=str(baseline),
                        **UNLIMITED,
                    )
                    argv = [str(a) for a in served.process.args]  # type: ignore[union-attr]
                    based = start("grpc-base", argv, base_env, base, base / "grpc-base.port")
                    processes.append(based.process)
                for spec in http_specs:
                    launch_http(spec, base, nats.url)
                    assert spec.process is not None
                    processes.append(spec.process)
                api_key = await asyncio.to_thread(create_api_key, base, nats.url)
                http_specs[0].token = api_key
                await wait_port(echo)
                await wait_port(served)
                if based is not None:
                    await wait_port(based)
                for spec in http_specs:
                    assert spec.process is not None and spec.port_file is not None and spec.log is not None
                    proc = Proc(spec.name, spec.process, spec.port_file, spec.log)
                    await wait_port(proc)
                    spec.port = proc.port
                pids = {
                    "echo": echo.process.pid,
                    "grpc": served.process.pid,
                    "grpc call": served.process.pid,
                    "grpc typed": served.process.pid,
                }
                pids |= {spec.name: spec.process.pid for spec in http_specs if spec.process is not None}
                if based is not None:
                    pids |= {f"base {k}": based.process.pid for k in ("grpc", "grpc call", "grpc typed")}
                cells = make_cells(based is not None)
                async with contextlib.AsyncExitStack() as stack:
                    calls: dict[str, Call] = {"echo": await stack.enter_async_context(echo_caller(echo.port, certs))}
                    client = await stack.enter_async_context(grpc_session(served.port, certs))
                    calls["grpc"] = caller(client, LIST_TOOL, {}, "grpc")
                    calls["grpc call"] = await stack.enter_async_context(raw_call_caller(served.port, certs))
                    calls["grpc typed"] = await stack.enter_async_context(typed_caller(served.port, certs))
                    if based is not None:
                        base_client = await stack.enter_async_context(grpc_session(based.port, certs))
                        calls["base grpc"] = caller(base_client, LIST_TOOL, {}, "base grpc")
                        calls["base grpc call"] = await stack.enter_async_context(raw_call_caller(based.port, certs))
                        calls["base grpc typed"] = await stack.enter_async_context(typed_caller(based.port, certs))
                    for spec in http_specs:
                        http = await stack.enter_async_context(session(spec, MODE))
                        calls[spec.name] = caller(http, LIST_TOOL, {}, spec.name)
                    print(
                        f"{len(pids)} servers up; {len(cells)} cells x {plan.rounds} rounds x {plan.sample_s} s",
                        flush=True,
                    )
                    await measure(plan, calls, pids, cells)
            except BaseException:
                for log in sorted(base.glob("*.log")):  # noqa: ASYNC240 (reporting a failure)
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                    print(f"--- last lines of {log.name} ---\n{tail}", file=sys.stderr)
                raise
            finally:
                stop(processes)
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few, short samples (under a minute)")
    parser.add_argument("--baseline", type=Path, help="a src directory: also measure a gRPC server running it")
    parser.add_argument("--rounds", type=int, help="override the plan's rounds")
    parser.add_argument("--sample-s", type=float, help="override the plan's seconds per sample")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    plan = Plan(args.rounds or plan.rounds, args.sample_s or plan.sample_s, plan.warmup)
    started = time.perf_counter()
    baseline = args.baseline.resolve() if args.baseline else None
    if baseline is not None and not (baseline / "nats_mcp").is_dir():
        parser.error(f"{baseline} holds no nats_mcp package")
    cells = asyncio.run(run(plan, baseline))
    lines = lines_of(cells)
    print_table(lines)
    report = {
        "plan": asdict(plan),
        "quick": args.quick,
        "elapsed_s": time.perf_counter() - started,
        "environment": {
            "python": platform.python_version(),
            "mcp": version("mcp"),
            "grpcio": version("grpcio"),
            "machine": platform.machine(),
            "cpus": len(os.sched_getaffinity(0)),
            "load_avg": os.getloadavg(),
        },
        "in_flight": IN_FLIGHT,
        "mode": MODE,
        "baseline": str(baseline) if baseline else None,
        "rows": lines,
        "samples": {cell.key: [asdict(s) for s in cell.samples] for cell in cells},
    }
    (RESULTS / "grpc.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {RESULTS / 'grpc.json'} in {report['elapsed_s']:.1f} s")


if __name__ == "__main__":
    main()
