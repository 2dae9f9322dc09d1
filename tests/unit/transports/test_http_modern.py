"""The own 2026-07-28 HTTP path (transports/http/modern.py) where a call is not one quick JSON answer: a notification
first, a call silent past the ping interval, a handler that raises, a client that disconnects. Each against the
SDK's single-exchange entry in process (its real session manager, a low-level Server playing the MCP server), the
answers compared; and the switch that turns the path off (tests/integration/test_http_direct.py compares the rest
against a real nats-server)."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.server import _streamable_http_modern as sdk_modern
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPDeprecationWarning

from nats_mcp.config.loader import load_settings
from nats_mcp.transports.http import modern
from nats_mcp.transports.http.modern import OWN_DISPATCH_ENV, ModernCalls, own_dispatch_default
from nats_mcp.transports.stdio import OWN_DISPATCH_ENV as STDIO_OWN_DISPATCH_ENV
from tests.support import asgi
from tests.support.sse import sse_events

ENVELOPE = {
    types.PROTOCOL_VERSION_META_KEY: "2026-07-28",
    types.CLIENT_CAPABILITIES_META_KEY: {},
    types.LOG_LEVEL_META_KEY: "debug",  # the request opts in to log messages on its own response
}
SLOW_S = 0.3
started = anyio.Event()
cancelled: list[str] = []


async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name == "chatty":
        with warnings.catch_warnings():  # logging is deprecated in 2026-07-28, and still served
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await ctx.session.send_log_message("info", {"note": 1}, related_request_id=ctx.request_id)
    elif params.name == "slow":
        await anyio.sleep(SLOW_S)  # longer than the (shortened) ping interval, so the answer becomes a stream
    elif params.name == "boom":
        raise RuntimeError("internal detail")
    elif params.name == "hang":
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(str(ctx.request_id))
    return types.CallToolResult(content=[types.TextContent(type="text", text=params.name)])


@contextlib.asynccontextmanager
async def running() -> AsyncIterator[StreamableHTTPSessionManager]:
    """The SDK's session manager, running (in the test's own task: its task group must exit where it entered)."""
    server: Server[Any] = Server("t", on_call_tool=call_tool)
    server.middleware = []  # as build_http_app leaves it with tracing off
    found = StreamableHTTPSessionManager(app=server)
    async with found.run():
        yield found


async def post(app: Any, name: str, disconnect: anyio.Event | None = None) -> tuple[int, str, list[Any]]:
    """POST a call of tool ``name`` to ``app``: (status, content type, the JSON body or the SSE events' data)."""
    body = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {"name": name, "arguments": {}, "_meta": ENVELOPE},
    }
    exchange = asgi.post(
        body,
        [
            (b"accept", b"application/json, text/event-stream"),
            (b"mcp-protocol-version", b"2026-07-28"),
            (b"mcp-method", b"tools/call"),
            (b"mcp-name", name.encode()),
        ],
        disconnect,
    )
    sent = exchange.sent
    await app(exchange.scope, exchange.receive, exchange.send)
    if not sent:
        return 0, "", []
    start = sent[0]
    kind = dict(start["headers"]).get(b"content-type", b"").decode()
    text = b"".join(m.get("body", b"") for m in sent[1:]).decode()
    if kind.startswith("text/event-stream"):
        return start["status"], kind, [json.loads(e["data"]) for e in sse_events(text) if e.get("data")]
    return start["status"], kind, [json.loads(text)]


@pytest.mark.parametrize("name", ["chatty", "slow", "boom", "plain"])
async def test_streams_and_errors_read_as_the_sdks(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(modern, "PING_INTERVAL_S", SLOW_S / 6)
    monkeypatch.setattr(sdk_modern, "_SSE_PING_INTERVAL", SLOW_S / 6)
    async with running() as manager:
        sdk = StreamableHTTPASGIApp(manager)
        own = ModernCalls(sdk, manager.app, manager)
        expected = await post(sdk, name)
        assert await post(own, name) == expected
    assert own.taken == 1
    status, kind, messages = expected
    if name in ("chatty", "slow"):
        assert kind.startswith("text/event-stream") and messages[-1]["result"]["content"][0]["text"] == name
        assert [m.get("method") for m in messages[:-1]] == (["notifications/message"] if name == "chatty" else [])
    elif name == "boom":
        assert messages[0]["error"] == {"code": types.INTERNAL_ERROR, "message": "Internal server error"}
    else:
        assert status == 200 and kind == "application/json"


async def test_a_client_that_disconnects_cancels_the_call() -> None:
    async with running() as manager:
        sdk = StreamableHTTPASGIApp(manager)
        own = ModernCalls(sdk, manager.app, manager)
        for app in (sdk, own):
            assert await disconnecting(app) == ["5"], app
        assert own.taken == 1


async def disconnecting(app: Any) -> list[str]:
    """A call of ``hang`` whose client goes away once it runs: the calls cancelled (nothing may be answered)."""
    global started
    started = anyio.Event()
    cancelled.clear()
    gone = anyio.Event()

    async def call() -> None:
        assert await post(app, "hang", gone) == (0, "", [])

    with anyio.fail_after(10):  # a call the disconnect does not cancel would hang here
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await started.wait()
            gone.set()
    return list(cancelled)


async def test_middleware_and_the_switch_leave_it_to_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    async def passing(ctx: Any, call_next: Any) -> Any:
        return await call_next(ctx)

    async with running() as manager:
        sdk = StreamableHTTPASGIApp(manager)
        own = ModernCalls(sdk, manager.app, manager)
        assert (await post(own, "plain"))[0] == 200 and own.taken == 1
        manager.app.middleware.append(passing)  # tracing on: the span middleware must see every request
        assert (await post(own, "plain"))[0] == 200 and own.taken == 1
    monkeypatch.setenv(OWN_DISPATCH_ENV, "0")
    assert not own_dispatch_default()
    switches = {OWN_DISPATCH_ENV: "0", STDIO_OWN_DISPATCH_ENV: "0", "NATS_MCP_HTTP_OWN_DISPATCHES": "0"}
    warned = load_settings(environ={"HOME": "/nonexistent", **switches}).warnings
    assert warned == ["ignoring unknown environment variable NATS_MCP_HTTP_OWN_DISPATCHES"]  # the switches are known
    monkeypatch.setenv(OWN_DISPATCH_ENV, "1")
    assert own_dispatch_default()
