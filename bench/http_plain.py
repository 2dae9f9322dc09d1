"""Benchmark boundary of plain HTTP answers (transports/http/plain.py): the same server with them on and off, one run.

    .venv/bin/python bench/http_plain.py [--quick]

Not in CI. One nats-server holds the stream, bucket and responder of bench/peers_http.py; two ``nats-mcp serve
--transport http`` processes with the NATS operations tools and one API key: ``after`` as shipped, ``before`` with
plain answers switched off (``PLAIN_METHODS`` emptied before the server starts: every request answered as the SDK's
SSE stream, as before). The Python SDK client (legacy mode, 2025-11-25 sessions) calls ``nats_publish``,
``nats_kv_get``, ``nats_stream_info`` and ``nats_request`` on each, sequentially and 10 in flight, in paired rounds
(order alternated). Prints median time per call and server CPU per call (all threads), with the ratios after/before.

``--against own-dispatch``: ``before`` is the shipped code with ``NATS_MCP_HTTP_OWN_DISPATCH=0`` instead (plain answers
on, the sessions' ``tools/call`` answered by the SDK's dispatcher rather than transports/http/session_calls.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
from http_tools import BenchError, Spec, caller, sample, server_argv, stop_servers, wait_listening  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from peers_http import OPS, NoGetStream, create_api_key_for_ops, ops_env, seed  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402

SWITCHED_OFF = (
    "import runpy, nats_mcp.transports.http.plain as plain; plain.PLAIN_METHODS = frozenset(); "
    "runpy.run_module('nats_mcp.cli.main', run_name='__main__', alter_sys=True)"
)
"""``python -c`` of the ``before`` server: the shipped code with no method answered plain."""


def launch(spec: Spec, base: Path, nats_url: str, off: bool, against: str = "plain") -> None:
    spec.port_file, spec.log = base / f"{spec.name}.port", base / f"{spec.name}.log"
    argv, env = server_argv(spec, base, spec.port_file)
    if off and against == "plain":
        argv = [sys.executable, "-c", SWITCHED_OFF, *argv[1:]]
    env |= {"NATS_URL": nats_url, **ops_env()}
    if off and against == "own-dispatch":
        env["NATS_MCP_HTTP_OWN_DISPATCH"] = "0"
    with spec.log.open("wb") as log:
        spec.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(base))


async def run(rounds: int, seconds: float, against: str = "plain") -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-http-plain-") as tmp:
        base = Path(tmp)
        with NatsServer(base / "nats").start() as server:
            responder = await seed(server.url)
            token = create_api_key_for_ops(base, server.url)
            specs = {name: Spec(name, "nats-mcp", token=token) for name in ("before", "after")}
            try:
                for name, spec in specs.items():
                    launch(spec, base, server.url, off=name == "before", against=against)
                await wait_listening(list(specs.values()))
                async with contextlib.AsyncExitStack() as stack:
                    clients = {}
                    for name, spec in specs.items():
                        headers = {"Authorization": f"Bearer {token}"}
                        http = httpx2.AsyncClient(headers=headers, timeout=30, transport=NoGetStream())
                        await stack.enter_async_context(http)
                        transport = streamable_http_client(spec.url, http_client=http)
                        clients[name] = await stack.enter_async_context(Client(transport, mode="legacy"))
                        await clients[name].list_tools()
                    for op, args in OPS.items():
                        for width in (1, 10):
                            got: dict[str, list[Any]] = {"before": [], "after": []}
                            for r in range(rounds):
                                for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
                                    process = specs[name].process
                                    assert process is not None
                                    fn = caller(clients[name], op, args, name)
                                    got[name].append(await sample(fn, seconds, width, process.pid))
                            ms = {n: statistics.median(1e3 * width / s.rate for s in v) for n, v in got.items()}
                            cpu = {n: statistics.median(s.server_ms for s in v) for n, v in got.items()}
                            rows.append({"op": op, "width": width, "ms": ms, "cpu": cpu})
                            print_row(rows[-1])
            finally:
                stop_servers(list(specs.values()))
                await responder.close()
    return rows


def print_row(row: dict[str, Any]) -> None:
    ms, cpu = row["ms"], row["cpu"]
    print(
        f"{row['op']:<18}{row['width']:>6}{ms['before']:>11.2f}{ms['after']:>10.2f}{ms['after'] / ms['before']:>7.2f}"
        f"{cpu['before']:>12.2f}{cpu['after']:>11.2f}{cpu['after'] / cpu['before']:>7.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    parser.add_argument("--against", choices=("plain", "own-dispatch"), default="plain", help="what before lacks")
    args = parser.parse_args()
    head = f"{'op':<18}{'width':>6}{'ms before':>11}{'ms after':>10}{'ratio':>7}"
    print(head + f"{'CPU before':>12}{'CPU after':>11}{'ratio':>7}")
    try:
        asyncio.run(run(3, 1.5, args.against) if args.quick else run(5, 4.0, args.against))
    except BenchError as exc:
        sys.exit(f"bench/http_plain.py: {exc}")


if __name__ == "__main__":
    main()
