"""The typed-gRPC boundary: Google's ``model_context_protocol.Mcp`` service (ListTools, CallTool) over the same path.

A typed call is translated into the 2026-07-28 JSON-RPC request it stands for and run through exactly what the
``McpTransport`` tunnel runs: admission (mTLS identity and/or bearer, lockout, audit), the frame checks, one SDK
server loop acting as the caller's agent, the guard on the tool call. The JSON-RPC answer is translated back.
So a typed client gets the same tools, the same policy and the same audit trail as every other transport.

Only ListTools and CallTool are served; the other methods of the service answer UNIMPLEMENTED (our resources
and prompts are reached through the tunnel). ``google.protobuf.Struct`` holds numbers as doubles: integers
beyond 2**53 in arguments or results would lose precision (ours are far smaller).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc
import mcp_types as types
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError
from mcp.shared.message import SessionMessage
from mcp_grpc_transport_proto import mcp_messages_pb2 as pb

from nats_mcp.security.identity import Identity
from nats_mcp.transports.grpc.admission import CallRefused, call_metadata, first_refusal
from nats_mcp.transports.grpc.server import McpGrpcService

TYPED_SERVICE = "model_context_protocol.Mcp"
PROTOCOL = "2026-07-28"
TOOL_KEYS = ("mcp-tool-name", "mcp-tool", "mcp_tool", "mcp-name")
"""Metadata naming the tool of a CallTool (Google's clients send one of these); it must agree with the request."""
_STATUS_OF = {
    types.INVALID_PARAMS: grpc.StatusCode.INVALID_ARGUMENT,
    types.INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    types.METHOD_NOT_FOUND: grpc.StatusCode.UNIMPLEMENTED,
}


def _dict(message: struct_pb2.Struct) -> dict[str, Any]:
    found: dict[str, Any] = json_format.MessageToDict(message)
    return found


def _struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    found = struct_pb2.Struct()
    found.update(dict(value))
    return found


def request_json(method: str, params: dict[str, Any], common: pb.RequestFields, request_id: int = 1) -> bytes:
    """The 2026-07-28 JSON-RPC request a typed call stands for (its ``_meta`` envelope from ``common.metadata``)."""
    meta = _dict(common.metadata) if common.HasField("metadata") else {}
    meta.setdefault("io.modelcontextprotocol/protocolVersion", PROTOCOL)
    meta.setdefault("io.modelcontextprotocol/clientInfo", {"name": "grpc-typed", "version": "0"})
    meta.setdefault("io.modelcontextprotocol/clientCapabilities", {})
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": meta}}
    return json.dumps(message, separators=(",", ":")).encode()


def tool_message(tool: Mapping[str, Any]) -> pb.Tool:
    """One tool of a ``tools/list`` result as the typed ``Tool``."""
    hints = tool.get("annotations") or {}
    annotations = pb.ToolAnnotations(
        title=hints.get("title") or "",
        read_only_hint=bool(hints.get("readOnlyHint", False)),
        destructive_hint=bool(hints.get("destructiveHint", False)),
        idempotent_hint=bool(hints.get("idempotentHint", False)),
        open_world_hint=bool(hints.get("openWorldHint", False)),
    )
    return pb.Tool(
        name=tool["name"],
        title=tool.get("title") or "",
        description=tool.get("description") or "",
        input_schema=_struct(tool.get("inputSchema") or {}),
        output_schema=_struct(tool.get("outputSchema")),
        annotations=annotations,
    )


def call_tool_message(result: Mapping[str, Any]) -> pb.CallToolResponse:
    """A ``tools/call`` result as the typed ``CallToolResponse`` (text content; our tools make no other kind).

    The result's ``_meta`` (a tool error's code: ``io.nats-mcp/error``) goes in ``common.metadata``.
    """
    content = []
    for block in result.get("content") or ():
        if block.get("type") != "text":
            raise CallRefused(grpc.StatusCode.INTERNAL, f"content of type {block.get('type')!r} has no typed form here")
        content.append(pb.CallToolResponse.Content(text=pb.TextContent(text=block.get("text", ""))))
    meta = result.get("_meta")
    return pb.CallToolResponse(
        common=pb.ResponseFields(metadata=_struct(meta)) if meta else None,
        content=content,
        structured_content=_struct(result.get("structuredContent")),
        is_error=bool(result.get("isError", False)),
    )


class TypedMcpService:
    """ListTools and CallTool of ``model_context_protocol.Mcp``, through the tunnel's admission, checks and guard."""

    def __init__(self, tunnel: McpGrpcService) -> None:
        self.tunnel = tunnel

    async def _run(self, who: Identity, raw: bytes, metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The JSON-RPC result of one request, or CallRefused: its JSON-RPC error as a status."""
        message = self.tunnel.check_frame(who.principal, raw)
        if metadata is not None:
            self.tunnel.check_metadata(who.principal, metadata, message)
        answers: list[SessionMessage] = []

        async def keep(out: SessionMessage) -> None:
            answers.append(out)

        await self.tunnel.exchange(who, message, keep)
        answer = answers[-1].message if answers else None
        if isinstance(answer, types.JSONRPCResponse):
            return answer.result
        if isinstance(answer, types.JSONRPCError):
            raise CallRefused(_STATUS_OF.get(answer.error.code, grpc.StatusCode.INTERNAL), answer.error.message)
        raise CallRefused(grpc.StatusCode.INTERNAL, "the server gave no answer")

    async def _serve(self, context: grpc.aio.ServicerContext[Any, Any], request: Any, work: Any) -> Any:
        refusal: CallRefused | None = None
        try:
            who = await self.tunnel.admit(context)
            if request is None:
                self.tunnel.audit("denied", who.principal, who.peer, "invalid_argument", "not_a_message")
                raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, f"the message is not a {TYPED_SERVICE} request")
            return await work(who)
        except* CallRefused as group:
            refusal = first_refusal(group)
        if refusal is not None:
            await refusal.abort(context)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    async def list_tools(
        self, request: pb.ListToolsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListToolsResponse:
        """The tools this principal may call (the policy filters them, as on every transport)."""

        async def work(who: Identity) -> pb.ListToolsResponse:
            result = await self._run(who, request_json("tools/list", {}, request.common))
            return pb.ListToolsResponse(tools=[tool_message(t) for t in result.get("tools") or ()])

        response: pb.ListToolsResponse = await self._serve(context, request, work)
        return response

    async def call_tool(
        self, request: pb.CallToolRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CallToolResponse:
        """One tool call through the guard; a tool error is a response with ``is_error``, as in MCP."""

        async def work(who: Identity) -> pb.CallToolResponse:
            metadata = call_metadata(context)
            claimed = {key: metadata[key] for key in TOOL_KEYS if key in metadata}
            name = request.request.name
            wrong = [f"{key} {value!r}" for key, value in claimed.items() if value != name]
            if wrong:
                self.tunnel.audit("denied", who.principal, who.peer, "invalid_argument", "header_mismatch")
                problem = f"metadata disagrees with the body: {', '.join(wrong)} but the body calls {name!r}"
                raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, problem)
            arguments = _dict(request.request.arguments) if request.request.HasField("arguments") else {}
            raw = request_json("tools/call", {"name": name, "arguments": arguments}, request.common)
            protocol = {k: v for k, v in metadata.items() if k == "mcp-protocol-version"}
            return call_tool_message(await self._run(who, raw, protocol))

        response: pb.CallToolResponse = await self._serve(context, request, work)
        return response

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            TYPED_SERVICE,
            {
                "ListTools": grpc.unary_unary_rpc_method_handler(
                    self.list_tools, tolerant(pb.ListToolsRequest), pb.ListToolsResponse.SerializeToString
                ),
                "CallTool": grpc.unary_unary_rpc_method_handler(
                    self.call_tool, tolerant(pb.CallToolRequest), pb.CallToolResponse.SerializeToString
                ),
            },
        )


def tolerant(kind: Any) -> Any:
    """A deserializer that gives None for bytes that are not a ``kind`` (answered INVALID_ARGUMENT by us)."""

    def parse(data: bytes) -> Any:
        try:
            return kind.FromString(data)
        except DecodeError:
            return None

    return parse
