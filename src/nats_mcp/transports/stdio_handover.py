"""The SDK side of the stdio front: record the handshake answers for the cache, and drop a replayed answer.

:func:`capture` runs the SDK's own stream loops (the ones transports/stdio.py serves on) over memory streams with a
built server, sends each revision's first messages and keeps each ``result`` exactly as the stdio writer lays it
out: the answers transports/stdio_front.py gives from the cache are the SDK's by construction.
:class:`DropFirstReply` is the write stream of a session the front began on the handshake era: the SDK answers
the replayed ``initialize`` again, and that one line (its first) must not reach the client.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import mcp.server.runner as sdk_runner
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.shared.message import SessionMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from nats_mcp.transports.stdio_front import CLIENT_CAPABILITIES_KEY, CLIENT_INFO_KEY, PROTOCOL_VERSION_KEY

log = logging.getLogger("nats_mcp.transports.stdio")

CAPTURE_CLIENT = {"name": "nats-mcp-startup-cache", "version": "1"}
CAPTURE_TIMEOUT_S = 10


class DropFirstReply:
    """A write stream that drops the first message if it answers ``request_id``, then is the inner stream."""

    def __init__(self, inner: Any, request_id: int | str) -> None:
        self._inner = inner
        self._request_id = request_id

    async def send(self, item: SessionMessage, /) -> None:
        self.send = self._inner.send  # type: ignore[method-assign]  # from now on straight to the pipe
        message = item.message
        if isinstance(message, types.JSONRPCResponse) and message.id == self._request_id:
            return
        log.warning("stdio hand-over: the SDK's first message was not its answer to the replayed initialize")
        await self._inner.send(item)

    async def send_json(self, data: bytes, /) -> None:
        """A direct answer (api/direct.py): never the answer to the replayed ``initialize`` (the SDK writes that
        before any call is taken), so it goes straight through."""
        await self._inner.send_json(data)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> DropFirstReply:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _line(message: types.JSONRPCMessage) -> str:
    """What transports/stdio.py's ``PipeWriteStream.send`` writes for a message (without the newline)."""
    return message.model_dump_json(by_alias=True, exclude_unset=True)


def result_text(line: str, request_id: int) -> str:
    """The ``result`` of a success line exactly as written; ValueError for an error or another layout."""
    head = f'{{"jsonrpc":"2.0","id":{request_id},"result":'
    if not line.startswith(head) or not line.endswith("}"):
        raise ValueError(f"not a result line for id {request_id}: {line[:200]}")
    return line[len(head) : -1]


async def _exchange(server: Server[Any], modern: bool, messages: list[dict[str, Any]]) -> dict[int, str]:
    """Serve ``messages`` on one in-memory connection of the era; the answer line of each request, by id."""
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](len(messages))
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](len(messages) + 8)
    wanted = {m["id"] for m in messages if "id" in m}
    answers: dict[int, str] = {}
    for m in messages:
        to_server.send_nowait(SessionMessage(types.jsonrpc_message_adapter.validate_python(m, by_name=False)))
    with anyio.fail_after(CAPTURE_TIMEOUT_S):
        async with anyio.create_task_group() as tg:
            if modern:
                tg.start_soon(
                    lambda: sdk_runner._serve_modern_stream(
                        server, server_reads, server_writes, lifespan_state=None, raise_exceptions=False
                    )
                )
            else:
                tg.start_soon(
                    lambda: sdk_runner._serve_legacy_stream(
                        server,
                        server_reads,
                        server_writes,
                        lifespan_state=None,
                        session_id=None,
                        init_options=server.create_initialization_options(),
                        raise_exceptions=False,
                    )
                )
            async for item in from_server:
                message = item.message
                rid = message.id if isinstance(message, types.JSONRPCResponse | types.JSONRPCError) else None
                if isinstance(rid, int) and rid in wanted:
                    answers[rid] = _line(message)
                if set(answers) == wanted:
                    break
            to_server.close()
            tg.cancel_scope.cancel()
    return answers


def _envelope(version: str) -> dict[str, Any]:
    return {"_meta": {PROTOCOL_VERSION_KEY: version, CLIENT_INFO_KEY: CAPTURE_CLIENT, CLIENT_CAPABILITIES_KEY: {}}}


async def capture(server: Server[Any]) -> dict[str, Any]:
    """Every answer the front gives, for every revision the SDK serves, as this server answers them."""
    answers: dict[str, Any] = {
        "handshake_versions": list(HANDSHAKE_PROTOCOL_VERSIONS),
        "latest_handshake": LATEST_HANDSHAKE_VERSION,
        "modern_versions": list(MODERN_PROTOCOL_VERSIONS),
        "initialize": {},
        "discover": {},
        "tools_list": {},
        "ping": {},
    }
    for version in HANDSHAKE_PROTOCOL_VERSIONS:
        init = {"protocolVersion": version, "capabilities": {}, "clientInfo": CAPTURE_CLIENT}
        lines = await _exchange(
            server,
            False,
            [
                {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init},
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                {"jsonrpc": "2.0", "id": 3, "method": "ping"},
            ],
        )
        answers["initialize"][version] = result_text(lines[1], 1)
        answers["tools_list"][version] = result_text(lines[2], 2)
        answers["ping"][version] = result_text(lines[3], 3)
    for version in MODERN_PROTOCOL_VERSIONS:
        lines = await _exchange(
            server,
            True,
            [
                {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": _envelope(version)},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": _envelope(version)},
            ],
        )
        answers["discover"][version] = result_text(lines[1], 1)
        answers["tools_list"][version] = result_text(lines[2], 2)
    return answers
