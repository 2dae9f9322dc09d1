"""The own path of 2025-era sessions (transports/http/session_calls.py) where a call is not one quick JSON answer: a
notification first, a call running past the hold, a handler that raises, a call its client cancels, a session that
ends under a call. Each on the SDK's real session transport (PlainAnswers) in process, served by the SDK's dispatcher
and kernel as transports/http/roaming.py serves a session, once with the path and once without, the answers
compared (tests/integration/test_http_direct.py compares the quick ones against a real nats-server)."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.runner import serve_connection
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext

from nats_mcp.transports.http import plain
from nats_mcp.transports.http.plain import PlainAnswers
from nats_mcp.transports.http.session_calls import SessionHot
from tests.support import asgi
from tests.support.sse import sse_events

SESSION = "0123456789abcdef0123456789abcdef"
HEADERS = [
    (b"accept", b"application/json, text/event-stream"),
    (b"mcp-session-id", SESSION.encode()),
    (b"mcp-protocol-version", b"2025-11-25"),
]
Answer = tuple[int, str, str, list[Any]]
"""(status, content type, ``Mcp-Session-Id``, the JSON body or the SSE events' data)."""
started = anyio.Event()


async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name == "chatty":
        with warnings.catch_warnings():  # logging is deprecated in 2026-07-28, and still 2025-11-25's
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await ctx.session.send_log_message("info", {"note": 1}, related_request_id=ctx.request_id)
    elif params.name == "slow":
        await anyio.sleep(plain.HOLD_S * 3)  # past the (shortened) hold: the answer becomes a stream
    elif params.name == "boom":
        raise RuntimeError("internal detail")
    elif params.name == "hang":
        started.set()
        await anyio.sleep_forever()
    elif params.name == "who":
        client = ctx.session.client_params
        text = f"{ctx.protocol_version} {client.client_info.name if client else None} {ctx.request is not None}"
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])
    return types.CallToolResult(content=[types.TextContent(type="text", text=params.name)])


@contextlib.asynccontextmanager
async def session(own: bool) -> AsyncIterator[tuple[PlainAnswers, SessionHot]]:
    """A session's transport served as transports/http/roaming.py serves one (the handshake done), with or without
    the own path."""
    server: Server[Any] = Server("t", on_call_tool=call_tool)
    server.middleware = []  # as build_http_app leaves it with tracing off
    hot = SessionHot(server)
    transport = PlainAnswers(mcp_session_id=SESSION)
    async with transport.connect() as (read, write), anyio.create_task_group() as tg:
        dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
            read, write, inline_methods=frozenset({"initialize"})
        )
        connection = Connection.for_loop(dispatcher, session_id=SESSION)
        connection.protocol_version = "2025-11-25"
        connection.client_params = types.InitializeRequestParams.model_validate(
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "cli", "version": "1"}}
        )
        connection.initialized.set()
        if own:
            transport.own = hot.calls(connection, None)
        await tg.start(partial(serve_connection, server, dispatcher, connection=connection, lifespan_state=None))
        yield transport, hot
        tg.cancel_scope.cancel()


async def post(transport: PlainAnswers, body: dict[str, Any]) -> Answer:
    exchange = asgi.post(body, HEADERS)
    sent = exchange.sent
    await transport.handle_request(exchange.scope, exchange.receive, exchange.send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    kind = headers.get("content-type", "")
    text = b"".join(m.get("body", b"") for m in sent[1:]).decode()
    if kind.startswith("text/event-stream"):
        data = [json.loads(e["data"]) for e in sse_events(text) if e.get("data")]
    else:
        data = [json.loads(text)] if text else []
    return start["status"], kind, headers.get("mcp-session-id", ""), data


def call(name: str, request_id: Any = 5) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": {}}}


Scenario = Callable[[PlainAnswers], Awaitable[Answer]]


async def both(scenario: Scenario) -> Answer:
    """``scenario`` on a session with the own path and on one without: the same answer (returned), the path hit."""
    answers = []
    for own in (False, True):
        async with session(own) as (transport, hot):
            answers.append(await scenario(transport))
        assert hot.taken == (1 if own else 0)
    assert answers[1] == answers[0]
    return answers[0]


@pytest.mark.parametrize("name", ["chatty", "slow", "boom", "plain", "who"])
async def test_streams_and_errors_read_as_the_sdks(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plain, "HOLD_S", 0.1)
    status, kind, sid, messages = await both(lambda transport: post(transport, call(name)))
    assert status == 200 and sid == SESSION
    if name in ("chatty", "slow"):
        assert kind.startswith("text/event-stream") and messages[-1]["result"]["content"][0]["text"] == name
        assert [m.get("method") for m in messages[:-1]] == (["notifications/message"] if name == "chatty" else [])
    elif name == "boom":  # the 2025-era dispatcher's fallback: code 0 and the text
        assert kind == "application/json" and messages[0]["error"] == {"code": 0, "message": "internal detail"}
    elif name == "who":  # the handler sees the session's negotiated revision, client and HTTP request
        assert messages[0]["result"]["content"][0]["text"] == "2025-11-25 cli True"
    else:
        assert kind == "application/json" and messages[0]["result"]["content"][0]["text"] == "plain"


async def cut_short(transport: PlainAnswers, how: str) -> Answer:
    """A hanging call, cancelled by its client (``notifications/cancelled``) or by the session's end."""
    global started
    started = anyio.Event()
    answer: list[Answer] = []
    async with anyio.create_task_group() as tg:

        async def hang() -> None:
            answer.append(await post(transport, call("hang", "h-1")))

        tg.start_soon(hang)
        await started.wait()
        if how == "client":
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "h-1"}}
            assert (await post(transport, cancel))[0] == 202
        else:
            await transport.terminate()
    return answer[0]


@pytest.mark.parametrize("how", ["client", "session end"])
async def test_a_call_cut_short_reads_as_the_sdks(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plain, "HOLD_S", 30.0)  # cut within the hold: the answer is one JSON body
    status, kind, _, messages = await both(lambda transport: cut_short(transport, how))
    assert kind == "application/json"
    if how == "client":
        assert status == 200 and messages[0]["error"] == {"code": -32800, "message": "Request cancelled"}
    else:
        assert status == 500 and messages[0]["error"]["message"] == "Session terminated before the request completed"
