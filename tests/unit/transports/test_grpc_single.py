"""Boundary of one request served without a session loop: the SDK's envelope ladder, progress, errors, replies."""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.message import SessionMessage

from nats_mcp.transports.grpc.single import answer

ENVELOPE = {
    types.PROTOCOL_VERSION_META_KEY: "2026-07-28",
    types.CLIENT_CAPABILITIES_META_KEY: {},
    types.CLIENT_INFO_META_KEY: {"name": "test", "version": "0"},
}
TOOLS = [types.Tool(name=name, input_schema={"type": "object"}) for name in ("echo", "steps", "boom")]


class Calls:
    def __init__(self) -> None:
        self.ran: list[str] = []

    async def list_tools(self, _ctx: ServerRequestContext[Any], _p: types.PaginatedRequestParams | None) -> Any:
        return types.ListToolsResult(tools=TOOLS)

    async def call_tool(self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        self.ran.append(params.name)
        if params.name == "boom":
            raise RuntimeError("secret internals: /etc/nats/creds")
        if params.name == "steps":
            token = ctx.meta.get("progress_token") if ctx.meta else None
            assert token is not None
            for step in (1, 2):
                await ctx.session.send_progress_notification(token, step, total=2, related_request_id=ctx.request_id)
        text = str((params.arguments or {}).get("text", "done"))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


def request(method: str, params: dict[str, Any] | None, rid: int = 7) -> types.JSONRPCRequest:
    return types.JSONRPCRequest(jsonrpc="2.0", id=rid, method=method, params=params)


async def serve(calls: Calls, req: types.JSONRPCRequest) -> tuple[list[Any], Any]:
    server: Server[Any] = Server("t", version="0", on_list_tools=calls.list_tools, on_call_tool=calls.call_tool)
    emitted: list[Any] = []

    async def emit(message: SessionMessage) -> None:
        emitted.append(message.message)

    reply = await answer(server, None, req, emit)
    return emitted, reply


async def test_a_tool_call_with_its_envelope_is_answered_once_with_the_same_id() -> None:
    calls = Calls()
    emitted, reply = await serve(
        calls, request("tools/call", {"name": "echo", "arguments": {"text": "hi"}, "_meta": ENVELOPE})
    )
    assert isinstance(reply, types.JSONRPCResponse) and reply.id == 7
    assert reply.result["content"][0]["text"] == "hi"
    assert emitted == [] and calls.ran == ["echo"]


async def test_progress_reaches_the_caller_before_the_reply_in_order() -> None:
    meta = {**ENVELOPE, "progressToken": "p-1"}
    emitted, reply = await serve(Calls(), request("tools/call", {"name": "steps", "_meta": meta}))
    assert [(n.method, n.params["progressToken"], n.params["progress"]) for n in emitted] == [
        ("notifications/progress", "p-1", 1),
        ("notifications/progress", "p-1", 2),
    ]
    assert isinstance(reply, types.JSONRPCResponse)


async def test_a_request_without_the_envelope_is_refused_naming_what_is_missing_and_runs_nothing() -> None:
    calls = Calls()
    emitted, reply = await serve(calls, request("tools/call", {"name": "echo"}))
    assert isinstance(reply, types.JSONRPCError) and reply.id == 7
    assert reply.error.code == types.INVALID_PARAMS
    assert types.PROTOCOL_VERSION_META_KEY in reply.error.message
    assert calls.ran == [] and emitted == []


async def test_an_unsupported_protocol_version_is_refused_with_the_supported_list() -> None:
    meta = {**ENVELOPE, types.PROTOCOL_VERSION_META_KEY: "1999-01-01"}
    _, reply = await serve(Calls(), request("tools/list", {"_meta": meta}))
    assert isinstance(reply, types.JSONRPCError)
    assert reply.error.code == types.UNSUPPORTED_PROTOCOL_VERSION
    assert "2026-07-28" in reply.error.data["supported"]


async def test_initialize_is_not_a_call_even_with_an_envelope() -> None:
    calls = Calls()
    _, reply = await serve(calls, request("initialize", {"protocolVersion": "2025-11-25", "_meta": ENVELOPE}))
    assert isinstance(reply, types.JSONRPCError) and reply.error.code == types.UNSUPPORTED_PROTOCOL_VERSION
    assert calls.ran == []


async def test_a_handler_crash_is_a_generic_internal_error_that_leaks_nothing() -> None:
    _, reply = await serve(Calls(), request("tools/call", {"name": "boom", "_meta": ENVELOPE}))
    assert isinstance(reply, types.JSONRPCError) and reply.error.code == types.INTERNAL_ERROR
    assert "secret" not in reply.model_dump_json() and "/etc/nats" not in reply.model_dump_json()


async def test_an_unknown_method_is_method_not_found() -> None:
    _, reply = await serve(Calls(), request("no/such", {"_meta": ENVELOPE}))
    assert isinstance(reply, types.JSONRPCError) and reply.error.code == types.METHOD_NOT_FOUND
