"""Benchmark boundary of the HTTP side-by-side: our NATS operations tools (API key) against mcp-nats, in one run.

    scripts/peers                                   # once: builds mcp-nats (and Warp) into .cache/peers/
    .venv/bin/python bench/peers_http.py [--quick]

Not in CI. One nats-server holds a stream, a KV bucket and a request responder. Ours is ``nats-mcp serve --transport
http`` with the NATS operations tools on and a real API key (the example policy's ``nats-operator`` role); the peer is
Gooseus/mcp-nats on its streamable HTTP transport (it has no authentication). The same Python SDK client (legacy
mode, protocol 2025-11-25, which both speak) calls ``nats_publish``, ``nats_kv_get``, ``nats_stream_info`` and
``nats_request`` on each, sequentially and 10 in flight, in paired rounds. The table gives median per-call time and
server CPU per call (all threads of the server process), the ratios ours/peer, and the issue's targets: per-call time
≤ 1.0× the peer's and our server CPU ≤ 1.5 ms per call. Writes bench/results/peers_http.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import nats  # noqa: E402
from http_tools import (  # noqa: E402
    KEEPALIVE_EXPIRY_S,
    BenchError,
    Spec,
    caller,
    sample,
    server_argv,
    stop_servers,
    wait_listening,
)
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT  # noqa: E402
from nats.js.api import KeyValueConfig, StreamConfig  # noqa: E402
from tests.support.env import isolated_env, nats_mcp_exe  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MCP_NATS = ROOT / ".cache" / "peers" / "mcp-nats" / "dist" / "index.js"
POLICY = ROOT / "docs" / "examples" / "nats-ops-policy.yaml"
CPU_TARGET_MS = 1.5


@dataclass(frozen=True)
class Plan:
    rounds: int
    seconds: float


QUICK = Plan(rounds=3, seconds=1.5)
FULL = Plan(rounds=5, seconds=4.0)

OPS: dict[str, dict[str, Any]] = {
    "nats_publish": {"subject": "orders.new", "payload": "hello"},
    "nats_kv_get": {"bucket": "config", "key": "greeting"},
    "nats_stream_info": {"stream": "ORDERS_BENCH"},
    "nats_request": {"subject": "svc.echo", "payload": "ping"},
}


def free_port() -> int:
    """A port for mcp-nats, which takes only a fixed ``--port`` (the race with another binder is a bench risk)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_peer(spec: Spec, base: Path, nats_url: str) -> None:
    spec.port = free_port()
    spec.log = base / "mcp-nats.log"
    argv = ["node", str(MCP_NATS), "--transport=sse", f"--port={spec.port}", "--host=127.0.0.1"]
    with spec.log.open("wb") as log:
        env = {"NATS_URL": nats_url, "PATH": os.environ["PATH"]}
        spec.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(base))


def launch_ours(spec: Spec, base: Path, nats_url: str) -> None:
    """``nats-mcp serve --transport http`` as bench/http_tools.py starts it, with the operations tools on."""
    spec.port_file = base / "ours.port"
    spec.log = base / "ours.log"
    argv, env = server_argv(spec, base, spec.port_file)
    env |= {"NATS_URL": nats_url, **ops_env()}
    with spec.log.open("wb") as log:
        spec.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(base))


class NoGetStream(httpx2.AsyncBaseTransport):
    """Answers the client's standalone GET stream with 405 (as a server without one would) and sends the rest.

    mcp-nats connects its one MCP server object to a new transport on every GET, which takes the server away from
    the POST session that just initialized (its calls then never answer). Neither side needs the GET stream for
    these calls, so the client opens it on neither.
    """

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "GET":
            return httpx2.Response(405, request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def connect(stack: contextlib.AsyncExitStack, spec: Spec) -> Client:
    """A legacy-mode (2025-11-25) SDK client of ``spec``, tools listed once as a real client does."""
    headers = {"Authorization": f"Bearer {spec.token}"} if spec.token else None
    timeout = httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT)
    http = httpx2.AsyncClient(headers=headers, timeout=timeout, transport=NoGetStream())
    await stack.enter_async_context(http)
    client = await stack.enter_async_context(Client(streamable_http_client(spec.url, http_client=http), mode="legacy"))
    await client.list_tools()
    return client


async def wait_port(spec: Spec, timeout: float = 30.0) -> None:
    """Return once the peer accepts TCP connections (it connects to NATS before it listens)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", spec.port)
        except OSError:
            assert spec.process is not None and spec.log is not None
            if spec.process.poll() is not None or asyncio.get_running_loop().time() > deadline:
                raise BenchError(f"{spec.name} is not listening: {spec.log.read_text()[-800:]}") from None
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return


async def seed(url: str) -> nats.NATS:
    """The stream, bucket and responder the four operations use (names the example policy's operator may touch)."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="ORDERS_BENCH", subjects=["orders.bench.>"]))
    for i in range(100):
        await js.publish(f"orders.bench.{i % 5}", b"x" * 100)
    kv = await js.create_key_value(KeyValueConfig(bucket="config"))
    await kv.put("greeting", b"hello world")

    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    await nc.subscribe("svc.echo", cb=echo)
    return nc


async def run(plan: Plan) -> dict[str, Any]:
    if not MCP_NATS.is_file():
        print(f"{MCP_NATS} is not built (run scripts/peers): nothing to compare.")
        return {"when": datetime.now(UTC).isoformat(timespec="seconds"), "rows": [], "peer": None}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-http-") as tmp:
        base = Path(tmp)
        with NatsServer(base / "nats").start() as server:
            responder = await seed(server.url)
            token = create_api_key_for_ops(base, server.url)
            ours = Spec("ours", "nats-mcp", token=token)
            peer = Spec("mcp-nats", "peer")
            try:
                launch_ours(ours, base, server.url)
                launch_peer(peer, base, server.url)
                await wait_listening([ours])
                await wait_port(peer)
                async with contextlib.AsyncExitStack() as stack:
                    clients = {}
                    for spec in (ours, peer):
                        clients[spec.name] = await connect(stack, spec)
                    pids = {s.name: s.process.pid for s in (ours, peer) if s.process is not None}
                    for op, args in OPS.items():
                        for width in (1, 10):
                            got: dict[str, list[Any]] = {"ours": [], "mcp-nats": []}
                            for r in range(plan.rounds):
                                for name in ("ours", "mcp-nats") if r % 2 == 0 else ("mcp-nats", "ours"):
                                    fn = caller(clients[name], op, args, name)
                                    got[name].append(await sample(fn, plan.seconds, width, pids[name]))
                            rows.append(row_of(op, width, got))
            finally:
                stop_servers([ours, peer])
                await responder.close()
    return {"when": datetime.now(UTC).isoformat(timespec="seconds"), "plan": plan.__dict__, "rows": rows}


def ops_env() -> dict[str, str]:
    return {"NATS_MCP_NATS_OPS_ENABLED": "true", "NATS_MCP_SECURITY_POLICY_FILE": str(POLICY)}


def create_api_key_for_ops(base: Path, url: str) -> str:
    """``nats-mcp keys create --role nats-operator --json`` against the run's NATS, under the example policy."""
    env = isolated_env(base / "keys", NATS_URL=url, NATS_MCP_NAMESPACE="bench", **ops_env())
    argv = [nats_mcp_exe(), "keys", "create", "--name", "bench", "--role", "nats-operator", "--json"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise BenchError(f"nats-mcp keys create failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return str(json.loads(done.stdout)["key"])


def row_of(op: str, width: int, got: dict[str, list[Any]]) -> dict[str, Any]:
    ms = {name: statistics.median(1e3 / s.rate for s in samples) for name, samples in got.items()}
    cpu = {name: statistics.median(s.server_ms for s in samples) for name, samples in got.items()}
    if width > 1:  # wall time per call at this width: the rate says it
        ms = {name: statistics.median(1e3 * width / s.rate for s in samples) for name, samples in got.items()}
    ratio = ms["ours"] / ms["mcp-nats"]
    return {
        "name": f"{op} x{width} (ours/mcp-nats, time per call)",
        "target": "<= 1.0x",
        "met": ratio <= 1.0,
        "cpu": {
            "name": f"{op} x{width} (our server CPU per call / {CPU_TARGET_MS} ms)",
            "ratio": cpu["ours"] / CPU_TARGET_MS,
            "target": "<= 1.0x",
            "met": cpu["ours"] <= CPU_TARGET_MS,
        },
        "op": op,
        "in_flight": width,
        "ms_ours": ms["ours"],
        "ms_peer": ms["mcp-nats"],
        "ratio": ratio,
        "cpu_ms_ours": cpu["ours"],
        "cpu_ms_peer": cpu["mcp-nats"],
        "time_verdict": "met" if ratio <= 1.0 else "NOT met",
        "cpu_verdict": "met" if cpu["ours"] <= CPU_TARGET_MS else "NOT met",
    }


def print_table(result: dict[str, Any]) -> None:
    head = f"{'op':<18} {'width':>5} {'ms ours':>8} {'ms peer':>8} {'ratio':>6} {'≤1.0':>8}"
    print(head + f" {'CPU ours':>9} {'CPU peer':>9} {'≤1.5 ms':>8}")
    for r in result["rows"]:
        print(
            f"{r['op']:<18} {r['in_flight']:>5} {r['ms_ours']:>8.2f} {r['ms_peer']:>8.2f} {r['ratio']:>6.2f}"
            f" {r['time_verdict']:>8} {r['cpu_ms_ours']:>9.2f} {r['cpu_ms_peer']:>9.2f} {r['cpu_verdict']:>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    args = parser.parse_args()
    try:
        result = asyncio.run(run(QUICK if args.quick else FULL))
    except BenchError as exc:
        sys.exit(f"bench/peers_http.py: {exc}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peers_http.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


if __name__ == "__main__":
    main()
