"""The 2026-07-28 hot-request boundary of ``/mcp``: a stateless ``tools/call`` or ``ping`` answered by api/direct.py.

A 2026-07-28 POST went to the SDK's single-exchange entry (``handle_modern_request`` of
``mcp.server._streamable_http_modern``): its checks, then ``serve_one`` (a ``ServerRunner`` per request, the
middleware chain, ``_meta`` parsed apart, the params validated twice, the result validated and dumped again), and in
SSE mode a task group of two tasks and a memory stream per request even when the answer is one JSON body.
:class:`ModernCalls` sits between the protocol gate and the SDK's session manager and takes the hot requests: every
check of the SDK's entry runs first, in its order and through its own functions (Host/Origin, ``Accept``, the
envelope, duplicated routing headers, the inbound ladder, the ``Mcp-Param-*`` headers against the tool's schema),
then api/direct.py's :class:`~nats_mcp.api.direct.HotCore` runs the handler as the SDK's kernel does, the outcome
mapped by the SDK's own ``_to_jsonrpc_response`` and written by its ``_write`` (same status table, same body).
Everything in front of this (authentication and the guard's identity, the body size limit, the protocol gate) is
unchanged.

Like the SDK's SSE mode, the answer is one JSON body unless the handler sends a notification first (a log message) or
runs past :data:`PING_INTERVAL_S` silent: then the response becomes an SSE stream (the notifications, pings, the
answer); a client that disconnects cancels the call (noticed from :data:`WATCH_AFTER_S` on). Left to the SDK: every
other method, a request with a ``progressToken`` (it asked for a stream), a body the gate could not parse, and
everything while server middleware (the tracing span) is on. ``NATS_MCP_HTTP_OWN_DISPATCH=0`` leaves everything to
the SDK; tests/integration/test_http_direct.py sends generated requests through both and compares the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, cast

import anyio
from mcp.server._streamable_http_modern import (
    _INVALID_BODY,
    _SSE_HEADERS,
    _mcp_param_rejection,
    _SingleExchangeDispatchContext,
    _sse_event,
    _to_jsonrpc_response,
    _write,
    _write_rejection,
)
from mcp.server.connection import _NO_CHANNEL
from mcp.server.streamable_http import check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.inbound import (
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import HEADER_MISMATCH, JSONRPCError, JSONRPCRequest, JSONRPCResponse
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nats_mcp.api.direct import HotCore
from nats_mcp.transports.http.sessions import BODY_KEY, header

OWN_DISPATCH_ENV = "NATS_MCP_HTTP_OWN_DISPATCH"
PING_INTERVAL_S = 15.0
"""How long a silent call may run before its response becomes an SSE stream with keepalive pings (the SDK's)."""
WATCH_AFTER_S = 0.05
"""When a running call starts watching for its client's disconnect (and the ping interval starts): the SDK watches
from the start with a task per request; a call answered sooner has no client to lose."""

_VERSION_HEADER = b"mcp-protocol-version"


def own_dispatch_default() -> bool:
    """Whether api/direct.py answers the hot 2026-07-28 requests (``NATS_MCP_HTTP_OWN_DISPATCH=0``: the SDK does)."""
    return os.environ.get(OWN_DISPATCH_ENV, "1").strip() != "0"


class _Stream:
    """The sink of a call's notifications: the response, committed to ``text/event-stream`` by the first one."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.lock = asyncio.Lock()  # not anyio's: it checkpoints even when free, ~50 µs a request
        self.committed = False
        self.ended = False

    async def _body(self, data: bytes, more: bool = True) -> None:
        if not self.committed:
            self.committed = True
            await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def send(self, event: bytes) -> None:
        """A notification (the SDK's dispatch context drops it, logged, on ``ClosedResourceError``)."""
        async with self.lock:
            if self.ended:
                raise anyio.ClosedResourceError
            try:
                await self._body(event)
            except OSError as exc:  # the client went away: as the SDK's closed sink
                raise anyio.ClosedResourceError from exc

    async def ping(self) -> None:
        async with self.lock:
            if not self.ended:
                await self._body(b": ping\r\n\r\n")


class ModernCalls:
    """ASGI wrapper of the SDK's session manager app: takes the hot 2026-07-28 POSTs (the module docstring says)."""

    def __init__(self, app: ASGIApp, server: Any, manager: StreamableHTTPSessionManager) -> None:
        self.app = app
        self.server = server
        self.manager = manager
        self._core: HotCore | None = None
        self._security = TransportSecurityMiddleware(manager.security_settings)
        self.taken = 0
        """How many requests this path has answered instead of the SDK's entry."""

    def _mine(self, scope: Scope) -> dict[str, Any] | None:
        """The parsed body of a request this path answers, else None (the SDK's entry answers it)."""
        if scope["type"] != "http" or scope.get("method") != "POST" or self.manager._task_group is None:
            return None
        if header(scope, _VERSION_HEADER) not in MODERN_PROTOCOL_VERSIONS:
            return None
        parsed: Any = scope.get(BODY_KEY)
        if not isinstance(parsed, dict) or "id" not in parsed:
            return None
        core = self._core
        if core is None:  # the lifespan state exists once the manager runs (checked above)
            core = self._core = HotCore(self.server, self.manager._lifespan_state)
        if not core.takes(parsed.get("method")):
            return None
        params = parsed.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if isinstance(meta, dict) and "progressToken" in meta:
            return None  # the client wants a stream of progress: the SDK's streaming entry
        return parsed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        decoded = self._mine(scope)
        if decoded is None:
            await self.app(scope, receive, send)
            return
        self.taken += 1
        await self._serve(decoded, scope, receive, send)

    async def _serve(self, decoded: dict[str, Any], scope: Scope, receive: Receive, send: Send) -> None:
        """``handle_modern_request``'s steps for a POST, in its order, with our core in place of ``serve_one``."""
        request = Request(scope, receive)
        err = await self._security.validate_request(request, is_post=True)
        if err is not None:
            await err(scope, receive, send)
            return
        json_response = self.manager.json_response
        has_json, has_sse = check_accept_headers(request)
        if not has_json or (not json_response and not has_sse):
            await Response(status_code=406)(scope, receive, send)
            return
        try:  # the body, as the gate parsed it with the same json.loads the SDK uses
            req = JSONRPCRequest.model_validate(decoded)
        except ValidationError:
            await _write(_INVALID_BODY, scope, receive, send)
            return
        duplicated = find_duplicated_routing_header(request.headers.items())
        if duplicated is not None:
            rejection = InboundLadderRejection(
                code=HEADER_MISMATCH, message=f"{duplicated} header appears more than once"
            )
            await _write_rejection(rejection, req.id, scope, receive, send)
            return
        verdict = classify_inbound_request(decoded, headers=dict(request.headers))
        if isinstance(verdict, InboundLadderRejection):
            await _write_rejection(verdict, req.id, scope, receive, send)
            return
        lifespan_state = self.manager._lifespan_state
        refused = await _mcp_param_rejection(self.server, request, req, verdict, lifespan_state)
        if refused is not None:
            await _write_rejection(refused, req.id, scope, receive, send)
            return
        assert self._core is not None  # made by _mine
        core = self._core
        connection = core.modern_connection(verdict, _NO_CHANNEL)
        dctx = _SingleExchangeDispatchContext(
            transport=TransportContext(kind="streamable-http", can_send_request=False, headers=request.headers),
            request_id=req.id,
            message_metadata=ServerMessageMetadata(request_context=request),
            progress_token=progress_token_from_params(req.params),
        )

        async def run() -> dict[str, Any]:
            try:
                return await core.handle(req, connection, dctx, request)
            finally:
                await HotCore.finish(connection)

        if json_response:
            await _write(await _to_jsonrpc_response(req.id, run()), scope, receive, send)
            return
        stream = _Stream(send)
        dctx.sink = cast(Any, stream)
        loop = asyncio.get_running_loop()
        watching: list[asyncio.Task[None]] = []
        with anyio.CancelScope() as call:
            # A quick call (almost all) is over before the watch would start: no task, no timer of its own.
            later = loop.call_later(
                WATCH_AFTER_S, lambda: watching.append(loop.create_task(_watch(receive, stream, call)))
            )
            try:
                answer = await _to_jsonrpc_response(req.id, run())
            finally:
                later.cancel()
                async with stream.lock:
                    stream.ended = True
                for watch in watching:
                    watch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watch
        if call.cancelled_caught:
            return  # the client disconnected: nothing to answer, as the SDK's entry
        await _finish(answer, stream, scope, receive, send)


async def _watch(receive: Receive, stream: _Stream, call: anyio.CancelScope) -> None:
    """Cancel the call when the client disconnects; keep a silent call's stream alive with pings (the SDK's)."""
    while True:
        with anyio.move_on_after(PING_INTERVAL_S):
            message: Message = await receive()
            while message["type"] != "http.disconnect":
                message = await receive()  # the body's messages the gate replays, then the disconnect
            call.cancel()
            return
        await stream.ping()


async def _finish(
    answer: JSONRPCResponse | JSONRPCError, stream: _Stream, scope: Scope, receive: Receive, send: Send
) -> None:
    """One JSON body with the table-mapped status, or the stream's last event if it became a stream."""
    if not stream.committed:
        await _write(answer, scope, receive, send)
        return
    await send({"type": "http.response.body", "body": _sse_event(answer), "more_body": False})
