"""Boundary of plain answers (transports/http/plain.py): when a session's request is answered as one JSON body and when
as the SDK's SSE stream, on the SDK's real transport in process (the test plays the MCP server behind it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp.server import Server
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import JSONRPCNotification, JSONRPCRequest, JSONRPCResponse

from nats_mcp.config.settings import Settings
from nats_mcp.transports.http import plain
from nats_mcp.transports.http.app import build_http_app
from nats_mcp.transports.http.plain import PlainAnswers
from tests.support import asgi
from tests.support.sse import sse_events

SESSION = "0123456789abcdef0123456789abcdef"
BOTH = b"application/json, text/event-stream"
Behind = Callable[[JSONRPCRequest, Any], Awaitable[None]]


def request(method: str = "tools/call", **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": method, "params": params or {"name": "echo", "arguments": {}}}


async def answer(server: Behind, body: dict[str, Any], accept: bytes = BOTH) -> tuple[int, dict[str, str], str]:
    """POST ``body`` to a session transport whose MCP server is ``server``: (status, headers, body text)."""
    transport = PlainAnswers(mcp_session_id=SESSION)
    exchange = asgi.post(
        body, [(b"accept", accept), (b"mcp-session-id", SESSION.encode()), (b"mcp-protocol-version", b"2025-11-25")]
    )
    sent = exchange.sent
    async with transport.connect() as (read_stream, write_stream), anyio.create_task_group() as tg:

        async def serve() -> None:
            async for got in read_stream:
                assert isinstance(got, SessionMessage) and isinstance(got.message, JSONRPCRequest)
                await server(got.message, write_stream)

        tg.start_soon(serve)
        await transport.handle_request(exchange.scope, exchange.receive, exchange.send)
        tg.cancel_scope.cancel()
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()
    return start["status"], headers, text


def response(req: JSONRPCRequest) -> SessionMessage:
    return SessionMessage(JSONRPCResponse(jsonrpc="2.0", id=req.id, result={"ok": True}))


def note(req: JSONRPCRequest) -> SessionMessage:
    message = JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params={"level": "info", "data": 1})
    return SessionMessage(message, metadata=ServerMessageMetadata(related_request_id=req.id))


async def quick(req: JSONRPCRequest, out: Any) -> None:
    await out.send(response(req))


async def chatty(req: JSONRPCRequest, out: Any) -> None:
    await out.send(note(req))
    await out.send(response(req))


async def slow(req: JSONRPCRequest, out: Any) -> None:
    await asyncio.sleep(plain.HOLD_S * 3)
    await out.send(response(req))


async def test_a_quick_answer_is_one_json_body() -> None:
    status, headers, text = await answer(quick, request())
    assert status == 200 and headers["content-type"] == "application/json" and headers["mcp-session-id"] == SESSION
    assert json.loads(text) == {"jsonrpc": "2.0", "id": 7, "result": {"ok": True}}


async def test_a_notification_first_makes_the_answer_a_stream_in_order() -> None:
    status, headers, text = await answer(chatty, request())
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    data = [json.loads(e["data"]) for e in sse_events(text) if e.get("data")]
    assert [m.get("method") for m in data] == ["notifications/message", None] and data[1]["result"] == {"ok": True}


async def test_a_call_still_running_after_the_hold_is_streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plain, "HOLD_S", 0.05)
    status, headers, text = await answer(slow, request())
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert [json.loads(e["data"])["result"] for e in sse_events(text) if e.get("data")] == [{"ok": True}]


@pytest.mark.parametrize(
    ("body", "accept"),
    [
        (request(name="echo", arguments={}, _meta={"progressToken": "p"}), BOTH),  # asked for progress
        (request("resources/subscribe", uri="warp://x"), BOTH),  # not a hot method
        (request(), b"text/event-stream"),  # the SDK answers 406
    ],
)
async def test_other_requests_keep_the_sdk_path(body: dict[str, Any], accept: bytes) -> None:
    status, headers, _ = await answer(quick, body, accept)
    assert headers["content-type"] != "application/json" or status == 406


def test_the_sdk_transport_is_the_base() -> None:
    """The subclass adds behaviour only: a transport the SDK made answers plain once its class is swapped."""
    made = StreamableHTTPServerTransport(mcp_session_id=SESSION)
    assert isinstance(plain.plain(made), PlainAnswers) and made.mcp_session_id == SESSION


@pytest.mark.parametrize("tracing", [False, True])
def test_the_sdks_span_per_request_only_with_tracing(tracing: bool) -> None:
    """No OpenTelemetry middleware of the SDK on the hot path when tracing is off; kept when it is on."""
    server: Server[Any] = Server("plain")
    settings = Settings(observe={"tracing": {"enabled": tracing}})  # type: ignore[arg-type]
    build_http_app(server, settings, 8080, verifier=None)
    assert any(isinstance(m, OpenTelemetryMiddleware) for m in server.middleware) is tracing
