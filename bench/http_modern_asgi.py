"""Benchmark boundary of the own 2026-07-28 HTTP path without sockets: the ``/mcp`` app called as ASGI, CPU per request.

    .venv/bin/python bench/http_modern_asgi.py [--quick]

Not in CI. Two apps built as ``nats-mcp serve --transport http --insecure-dev`` builds them (runtime, guard, audit,
the gate), one with the own path (transports/http/modern.py) and one without, against one nats-server, each called
in process with the same 2026-07-28 ``tools/call`` POSTs (no uvicorn, no client, no TCP: what is left is the app's
own work per request, the part this path changes). Rounds alternate the order; prints per tool the median CPU per
request (this process: the app, its NATS client and the audit writer) on each side and the median of the per-round
ratios own/sdk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.differential import ENVELOPE, POLICY  # noqa: E402
from tests.support.env import settings_for  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402

from nats_mcp.api.server import Security, build_server  # noqa: E402
from nats_mcp.runtime import Runtime  # noqa: E402
from nats_mcp.security.policy import Policy, parse_policy  # noqa: E402
from nats_mcp.transports.http.app import InsecureDev, build_http_app, gateway_caller  # noqa: E402

PORT = 8765
UNLIMITED = {
    f"NATS_MCP_SECURITY_RATE_PER_{who}_{what}": value
    for who in ("PRINCIPAL", "ADDRESS")
    for what, value in (("RATE_PER_S", "1000000"), ("BURST", "10000000"))
}
CALLS = {
    "warp_handle_get": {},
    "warp_channels_send": {"channel": "roadmap", "message": "bench"},
    "warp_channels_read (tool error)": {"channel": "no-such-channel"},
}


@contextlib.asynccontextmanager
async def app_of(base: Path, nats_url: str, own: bool) -> AsyncIterator[Any]:
    home = base / ("own" if own else "sdk")
    home.mkdir()
    config = settings_for(
        home,
        NATS_URL=nats_url,
        NATS_MCP_NAMESPACE=f"bench-{home.name}",
        NATS_MCP_SECURITY_AUDIT_FILE=str(home / "audit.jsonl"),
        **UNLIMITED,
    )
    async with Runtime(config, Policy(parse_policy(POLICY)), transport="http", observe=False) as runtime:
        assert await runtime.conn.wait_connected(10)
        coordinator = runtime.coordinator
        source = InsecureDev(runtime.guard, config)
        security = Security(runtime.guard, source.current, "http", coordinator.layout.namespace)
        server = build_server(coordinator, gateway_caller(source, coordinator.touch), "warp_", security)
        app = build_http_app(server, config, PORT, None, runtime.guard.audit, own_dispatch=own)
        async with app.router.lifespan_context(app):
            yield app


async def post(app: Any, tool: str, args: dict[str, Any], request_id: int) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call"}
    body["params"] = {"name": tool.split(" ")[0], "arguments": args, "_meta": ENVELOPE}
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "root_path": "",
        "query_string": b"",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", PORT),
        "headers": [
            (b"host", f"127.0.0.1:{PORT}".encode()),
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
            (b"mcp-protocol-version", b"2026-07-28"),
            (b"mcp-method", b"tools/call"),
            (b"mcp-name", tool.split(" ")[0].encode()),
            (b"content-length", str(len(raw)).encode()),
        ],
    }
    given = False
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    chunks: list[bytes] = []
    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    done.set()
    text = b"".join(chunks)
    if status != 200:
        raise RuntimeError(f"{tool}: HTTP {status}: {text[:300]!r}")
    return dict(json.loads(text))


async def run(rounds: int, per_sample: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-http-asgi-") as tmp:
        base = Path(tmp)
        with NatsServer(base / "nats").start() as nats:
            async with app_of(base, nats.url, True) as own, app_of(base, nats.url, False) as sdk:
                apps = {"own": own, "sdk": sdk}
                for name, app in apps.items():  # a handle, a warm-up; and both answer alike
                    assert not (await post(app, "warp_handle_set", {"handle": "bench"}, 0))["result"]["isError"]
                    for tool, args in CALLS.items():
                        for i in range(30):
                            answer = await post(app, tool, args, i)
                            assert ("error" in tool) == bool(answer["result"]["isError"]), (name, answer)
                for tool, args in CALLS.items():
                    got: dict[str, list[float]] = {name: [] for name in apps}
                    for r in range(rounds):
                        for name in list(apps) if r % 2 == 0 else list(reversed(apps)):
                            start = time.process_time()
                            for i in range(per_sample):
                                await post(apps[name], tool, args, i)
                            got[name].append(1e6 * (time.process_time() - start) / per_sample)
                    own_us, sdk_us = statistics.median(got["own"]), statistics.median(got["sdk"])
                    paired = statistics.median(o / s for o, s in zip(got["own"], got["sdk"], strict=True))
                    rows.append({"tool": tool, "own_us": own_us, "sdk_us": sdk_us, "paired": paired})
                    print(f"{tool:<34} CPU per request own {own_us:7.0f} µs  sdk {sdk_us:7.0f} µs  paired {paired:.2f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    opts = parser.parse_args()
    rounds, per_sample = (6, 100) if opts.quick else (14, 300)
    rows = asyncio.run(run(rounds, per_sample))
    out = ROOT / "bench" / "results" / "http_modern_asgi.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": rounds, "per_sample": per_sample, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
