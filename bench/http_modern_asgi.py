"""Benchmark boundary of the own 2026-07-28 HTTP path without sockets: the ``/mcp`` app called as ASGI, CPU per request.

    .venv/bin/python bench/http_modern_asgi.py [--quick]

Not in CI. Two apps built as ``nats-mcp serve --transport http --insecure-dev`` builds them (runtime, guard, audit,
the gate), one with the own path (transports/http/modern.py) and one without, against one nats-server, each called
in process with the same 2026-07-28 ``tools/call`` POSTs (no uvicorn, no client, no TCP: what is left is the app's
own work per request, the part this path changes). Rounds alternate the order; prints per tool the median CPU per
request (this process: the app, its NATS client and the audit writer) on each side and the median of the per-round
ratios own/sdk.

``--sessions``: the same with 2025-11-25 session POSTs instead (each app's sessions kept in NATS, as ``serve`` keeps
them; one session opened per app, then ``tools/call`` without an envelope): the own side answers them through
transports/http/session_calls.py, the other through the SDK's dispatcher, both as plain JSON (transports/http/plain.py).
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
async def app_of(base: Path, nats_url: str, own: bool, sessions: bool = False) -> AsyncIterator[Any]:
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
        nats = (runtime.conn, coordinator.layout) if sessions else None
        app = build_http_app(server, config, PORT, None, runtime.guard.audit, nats=nats, own_dispatch=own)
        async with app.router.lifespan_context(app):
            yield app


LEGACY = "2025-11-25"


async def exchange(app: Any, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes, bytes]:
    """One POST of ``body`` to ``app`` in process: (status, its ``Mcp-Session-Id``, the body)."""
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
            *headers,
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
    session = b""

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, session
        if message["type"] == "http.response.start":
            status = message["status"]
            session = dict(message["headers"]).get(b"mcp-session-id", b"")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    done.set()
    return status, session, b"".join(chunks)


async def open_session(app: Any) -> bytes:
    """A 2025-11-25 session of ``app`` (initialize, then its notification): its id."""
    client = {"name": "bench", "version": "1"}
    init = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": client}
    status, session, _ = await exchange(app, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}, [])
    if status != 200 or not session:
        raise RuntimeError(f"initialize: HTTP {status}")
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    headers = [(b"mcp-session-id", session), (b"mcp-protocol-version", LEGACY.encode())]
    if (await exchange(app, done, headers))[0] != 202:
        raise RuntimeError("notifications/initialized refused")
    return session


async def post(app: Any, tool: str, args: dict[str, Any], request_id: int, session: bytes = b"") -> dict[str, Any]:
    """A ``tools/call`` POST: 2026-07-28 (the envelope, routing headers), or in ``session`` (2025-11-25)."""
    name = tool.split(" ")[0]
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call"}
    if session:
        body["params"] = {"name": name, "arguments": args}
        headers = [(b"mcp-session-id", session), (b"mcp-protocol-version", LEGACY.encode())]
    else:
        body["params"] = {"name": name, "arguments": args, "_meta": ENVELOPE}
        headers = [
            (b"mcp-protocol-version", b"2026-07-28"),
            (b"mcp-method", b"tools/call"),
            (b"mcp-name", name.encode()),
        ]
    status, _, text = await exchange(app, body, headers)
    if status != 200:
        raise RuntimeError(f"{tool}: HTTP {status}: {text[:300]!r}")
    return dict(json.loads(text))


async def run(rounds: int, per_sample: int, sessions: bool = False) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-http-asgi-") as tmp:
        base = Path(tmp)
        with NatsServer(base / "nats").start() as nats:
            async with (
                app_of(base, nats.url, True, sessions) as own,
                app_of(base, nats.url, False, sessions) as sdk,
            ):
                apps = {"own": own, "sdk": sdk}
                ids = {name: await open_session(app) if sessions else b"" for name, app in apps.items()}
                for name, app in apps.items():  # a handle, a warm-up; and both answer alike
                    set_handle = await post(app, "warp_handle_set", {"handle": "bench"}, 0, ids[name])
                    assert not set_handle["result"]["isError"]
                    for tool, args in CALLS.items():
                        for i in range(30):
                            answer = await post(app, tool, args, i, ids[name])
                            assert ("error" in tool) == bool(answer["result"]["isError"]), (name, answer)
                for tool, args in CALLS.items():
                    got: dict[str, list[float]] = {name: [] for name in apps}
                    for r in range(rounds):
                        for name in list(apps) if r % 2 == 0 else list(reversed(apps)):
                            start = time.process_time()
                            for i in range(per_sample):
                                await post(apps[name], tool, args, i, ids[name])
                            got[name].append(1e6 * (time.process_time() - start) / per_sample)
                    own_us, sdk_us = statistics.median(got["own"]), statistics.median(got["sdk"])
                    paired = statistics.median(o / s for o, s in zip(got["own"], got["sdk"], strict=True))
                    rows.append({"tool": tool, "own_us": own_us, "sdk_us": sdk_us, "paired": paired})
                    print(f"{tool:<34} CPU per request own {own_us:7.0f} µs  sdk {sdk_us:7.0f} µs  paired {paired:.2f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    parser.add_argument("--sessions", action="store_true", help="2025-11-25 session POSTs (session_calls.py)")
    opts = parser.parse_args()
    rounds, per_sample = (6, 100) if opts.quick else (14, 300)
    rows = asyncio.run(run(rounds, per_sample, opts.sessions))
    out = ROOT / "bench" / "results" / ("http_session_asgi.json" if opts.sessions else "http_modern_asgi.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": rounds, "per_sample": per_sample, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
