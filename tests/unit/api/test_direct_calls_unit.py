"""What api/direct.py takes from the SDK and what it leaves to it (its answers are compared with the SDK's in
tests/integration/test_direct_calls.py); and the switch that turns it off."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.server.connection import Connection
from mcp.shared.message import SessionMessage

from nats_mcp.api.direct import DirectCalls, WriterOutbound
from nats_mcp.api.server import build_server
from nats_mcp.transports.stdio import OWN_DISPATCH_ENV, own_dispatch_default

ENVELOPE = {
    types.PROTOCOL_VERSION_META_KEY: "2026-07-28",
    types.CLIENT_CAPABILITIES_META_KEY: {},
}


def request(request_id: Any, method: str, params: dict[str, Any] | None = None) -> SessionMessage:
    return SessionMessage(types.JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method, params=params))


async def test_an_enveloped_call_is_answered_here_unless_a_middleware_must_see_it() -> None:
    server = build_server()
    send, receive = anyio.create_memory_object_stream[SessionMessage](10)
    direct = DirectCalls(server, None, send, None)
    call = request(1, "tools/call", {"name": "warp_handle_get", "_meta": ENVELOPE})
    assert direct.offer(call)
    answer = (await receive.receive()).message
    assert isinstance(answer, types.JSONRPCResponse) and answer.id == 1
    assert answer.result["isError"] and answer.result["_meta"][types.SERVER_INFO_META_KEY]["name"] == "nats-mcp"

    async def passing(ctx: Any, call_next: Any) -> Any:
        return await call_next(ctx)

    server.middleware.append(passing)  # tracing on: the span middleware wraps every request, on the SDK's path
    assert not direct.offer(call)
    assert direct.taken == 1


async def test_the_sdk_keeps_what_it_refuses_before_a_handler_and_everything_not_hot() -> None:
    server = build_server()
    send, _receive = anyio.create_memory_object_stream[SessionMessage](10)
    modern = DirectCalls(server, None, send, None)
    assert not modern.offer(request(1, "tools/call", {"name": "x", "_meta": {types.PROTOCOL_VERSION_META_KEY: 5}}))
    assert not modern.offer(request(2, "tools/list", {"_meta": ENVELOPE}))
    assert not modern.offer(request(3, "initialize", {"_meta": ENVELOPE}))
    note = SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled", params={}))
    assert not modern.offer(note)  # the SDK sees every notification, cancellations too
    assert not modern.offer(ValueError("not JSON"))

    session = Connection(WriterOutbound(send), protocol_version="2025-11-25")
    legacy = DirectCalls(server, None, send, session)
    ping = request(4, "ping")
    assert not legacy.offer(ping)  # before the handshake: the SDK's gate answers
    session.client_params = types.InitializeRequestParams(
        protocol_version="2025-11-25",
        capabilities=types.ClientCapabilities(),
        client_info=types.Implementation(name="c", version="1"),
    )
    assert not legacy.offer(request(5, "tools/call", {"name": "x", "_meta": ENVELOPE}))  # the other era's envelope
    assert legacy.offer(ping)
    await legacy.close()
    assert (modern.taken, legacy.taken) == (0, 1)


@pytest.mark.parametrize(("value", "own"), [(None, True), ("1", True), ("0", False), (" 0 ", False)])
def test_the_environment_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, own: bool) -> None:
    if value is None:
        monkeypatch.delenv(OWN_DISPATCH_ENV, raising=False)
    else:
        monkeypatch.setenv(OWN_DISPATCH_ENV, value)
    assert own_dispatch_default() is own
