"""The 2025-era hot-request boundary: a session's ``tools/call`` or ``ping`` POST answered by api/direct.py.

A request POST of an established 2025-11-25 (or earlier handshake-era) session went, once every check had passed,
from :class:`~nats_mcp.transports.http.plain.PlainAnswers` into the session's read stream, the SDK's
``JSONRPCDispatcher`` (its read loop, an in-flight record and a task per request), its ``ServerRunner`` (the
middleware chain, ``_meta`` parsed apart, the params validated twice, the result dumped again), then the write stream
and the transport's message router back into the request's stream, where ``PlainAnswers`` waited for it.
:class:`SessionCalls` (one per session, on the session's transport) takes the hot ones after the same checks (they
are ``PlainAnswers``' and the SDK's own, in front of it: authentication, identity, Host/Origin, ``Accept``, content
type, body limit, gate, the session known or restored and owned by the credential) and runs
:class:`~nats_mcp.api.direct.HotCore` in the request's task, on the session's own ``Connection`` (the negotiated
revision, the client's params, its log level) with a ``ServerSession`` over a request channel that behaves as the
dispatcher's: notifications and server requests go out through the session's dispatcher tagged with the request
(so the router stores and routes them), ``notifications/cancelled`` finds the call in the dispatcher's in-flight
table, and errors are mapped by its ladder.

The answer is what ``PlainAnswers`` writes: one JSON body (same status, headers, ``Mcp-Session-Id``) when the
response comes first within :data:`~nats_mcp.transports.http.plain.HOLD_S`; when a notification comes first or the
call is still running at ``HOLD_S``, the request's stream is opened then, exactly as ``PlainAnswers`` opens it (the
notification its first event, or a priming event), and the rest, the response included, goes through the
dispatcher's writes and the router as before. A call cancelled by its client is answered ``Request cancelled``, one
cut by the session's end ``Session terminated before the request completed`` (500), as there. Left to the SDK: a
session this process serves without NATS (its connection is the SDK's own), one not yet initialized, a request with
a 2026-07-28 envelope in ``_meta``, everything while server middleware (tracing) is on, and what ``PlainAnswers``
leaves to it (a ``progressToken``, other methods). ``NATS_MCP_HTTP_OWN_DISPATCH=0`` turns it off with the 2026-07-28
path (transports/http/modern.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.connection import Connection
from mcp.server.streamable_http import REQUEST_CANCELLED, REQUEST_STREAM_BUFFER_SIZE, EventMessage
from mcp.shared.dispatcher import CallOptions, coerce_request_id
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher, _InFlight
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    PROTOCOL_VERSION_META_KEY,
    ErrorData,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
)
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from nats_mcp.api.direct import HotCore
from nats_mcp.transports.http import plain

if TYPE_CHECKING:
    from nats_mcp.transports.http.plain import PlainAnswers

log = logging.getLogger("nats_mcp.http")

_DUPLEX = TransportContext(kind="jsonrpc", can_send_request=True)
"""What the dispatcher's default builder makes of a request of an SSE-mode session (ours)."""


class SessionHot:
    """One app's own answering of its sessions' hot requests: the kernel (made once the manager runs) and a count."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self._core: HotCore | None = None
        self.taken = 0
        """How many requests the sessions of this app answered here instead of the SDK's dispatcher."""

    def calls(self, connection: Connection, lifespan_state: Any) -> SessionCalls | None:
        """The hot-request taker of a session served on ``connection`` (None: its outbound is not the dispatcher)."""
        dispatcher = connection.outbound
        if not isinstance(dispatcher, JSONRPCDispatcher):
            return None
        if self._core is None:
            self._core = HotCore(self.server, lifespan_state)
        return SessionCalls(self, self._core, connection, dispatcher)


class SessionCalls:
    """The hot requests of one session's POSTs (the module docstring says which and how)."""

    def __init__(self, hot: SessionHot, core: HotCore, connection: Connection, dispatcher: JSONRPCDispatcher[Any]):
        self.hot = hot
        self.core = core
        self.connection = connection
        self.dispatcher = dispatcher
        self._running: set[anyio.CancelScope] = set()
        self.ended = False
        self._said = False

    def takes(self, message: JSONRPCRequest) -> bool:
        """Whether this request is answered here (else the SDK's dispatcher answers it, as before)."""
        if self.ended or not self.core.takes(message.method) or not self.connection.initialize_accepted:
            return False
        meta = (message.params or {}).get("_meta")
        return not (isinstance(meta, Mapping) and PROTOCOL_VERSION_META_KEY in meta)

    def end(self) -> None:
        """The session is ending: cut what still runs (the SDK's dispatcher cancels its handlers then)."""
        self.ended = True
        for scope in list(self._running):
            scope.cancel()

    async def answer(
        self,
        transport: PlainAnswers,
        scope: Scope,
        receive: Receive,
        send: Send,
        message: JSONRPCRequest,
        request: Request,
        protocol_version: str,
    ) -> None:
        """Run ``message`` and answer it as ``PlainAnswers`` answers what the dispatcher sends back."""
        self.hot.taken += 1
        if not self._said:  # once a session: which path its calls take, for whoever reads a debug log
            self._said = True
            log.debug("MCP session %s: tools/call and ping answered by api/direct.py", transport.mcp_session_id)
        request_id = str(message.id)
        # The very metadata the transport frames the request with (the request, the close callbacks, the
        # unanswered hook), so the handler's context and a cancelled call's answer are the SDK's.
        metadata = transport._create_session_message(message, request, request_id, protocol_version).metadata
        assert isinstance(metadata, ServerMessageMetadata)
        channel = _Channel(self, transport, message.id, metadata, (scope, receive, send, protocol_version))
        dispatcher = self.dispatcher
        key = coerce_request_id(message.id)
        call = anyio.CancelScope()
        dispatcher._in_flight[key] = _InFlight(scope=call, dctx=channel)  # type: ignore[arg-type]
        self._running.add(call)
        outcome: dict[str, Any] | ErrorData | None = None
        later = asyncio.get_running_loop().call_later(plain.HOLD_S, channel.stream, False)
        try:
            with call:
                try:
                    outcome = await self.core.handle(
                        message,
                        self.connection,
                        channel,
                        metadata.request_context,
                        metadata.close_sse_stream,
                        metadata.close_standalone_sse_stream,
                    )
                except Exception as exc:  # the dispatcher's ladder, its 2025-era fallback (code 0, the text)
                    outcome = HotCore.error_data(exc, False, message.method)
                finally:
                    later.cancel()
                    channel.closed = True
                    if (entry := dispatcher._in_flight.get(key)) is not None and entry.dctx is channel:  # type: ignore[comparison-overlap]
                        del dispatcher._in_flight[key]
        finally:
            self._running.discard(call)
        if channel.cancel_requested.is_set():
            outcome = None  # the client cancelled it: never answered, the transport ends it "Request cancelled"
        terminated = call.cancelled_caught and not channel.cancel_requested.is_set()
        if channel.task is not None:  # a stream already: the rest goes as the dispatcher writes it
            await channel.primed.wait()  # after its first event, as in the store (a resumption replays from it)
            await _written(dispatcher, message, outcome, terminated, metadata)
            await channel.task
            return
        if terminated:
            response = transport._create_error_response(
                "Session terminated before the request completed", HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_ERROR
            )
        elif isinstance(outcome, dict):
            response = transport._create_json_response(JSONRPCResponse(jsonrpc="2.0", id=message.id, result=outcome))
        else:
            error = outcome or ErrorData(code=REQUEST_CANCELLED, message="Request cancelled")
            response = transport._create_json_response(JSONRPCError(jsonrpc="2.0", id=message.id, error=error))
        await response(scope, receive, send)


async def _written(
    dispatcher: JSONRPCDispatcher[Any],
    message: JSONRPCRequest,
    outcome: dict[str, Any] | ErrorData | None,
    terminated: bool,
    metadata: ServerMessageMetadata,
) -> None:
    """The outcome written as the dispatcher's ``_handle_request`` writes it (the router takes it from there)."""
    if terminated:
        closed = ErrorData(code=CONNECTION_CLOSED, message="Connection closed")
        with anyio.move_on_after(1.0, shield=True):
            await dispatcher._write_error(message.id, closed)
    elif isinstance(outcome, dict):
        await dispatcher._write_result(message.id, outcome)
    elif outcome is not None:
        await dispatcher._write_error(message.id, outcome)
    elif metadata.on_request_unanswered is not None:
        try:
            await metadata.on_request_unanswered()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.debug("on_request_unanswered dropped: connection closing")


class _Channel:
    """One taken request's ``DispatchContext``, as the dispatcher's: its messages go out through the dispatcher
    tagged with the request; the first of them (or :data:`HOLD_S` of silence) turns the answer into a stream."""

    def __init__(
        self,
        calls: SessionCalls,
        transport: PlainAnswers,
        request_id: Any,
        metadata: ServerMessageMetadata,
        exchange: tuple[Scope, Receive, Send, str],
    ) -> None:
        self._calls = calls
        self._transport = transport
        self._request_id = request_id
        self.message_metadata = metadata
        self._exchange = exchange
        self.cancel_requested = anyio.Event()
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        self.primed = asyncio.Event()
        """Set once the stream's first event is stored (what comes after it must be stored after it)."""

    @property
    def transport(self) -> TransportContext:
        return _DUPLEX

    @property
    def request_id(self) -> Any:
        return self._request_id

    @property
    def can_send_request(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        if self.closed:
            log.debug("dropped %s: dispatch context closed", method)
            return
        self.stream(True)
        await self._calls.dispatcher.notify(method, params, opts, _related_request_id=self._request_id)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        if not self.can_send_request:
            raise NoBackChannelError(method)
        self.stream(True)
        return await self._calls.dispatcher.send_raw_request(method, params, opts, _related_request_id=self._request_id)

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return  # a request with a progress token is the SDK's (PlainAnswers leaves it to it)

    def stream(self, lead_waits: bool) -> None:
        """Open the request's stream (once): what ``PlainAnswers`` does when a message other than the response
        comes first (``lead_waits``: it is on its way, the stream's first event) or the hold ends silent."""
        if self.task is not None or self.closed:
            return
        transport = self._transport
        request_id = str(self._request_id)
        writer, reader = anyio.create_memory_object_stream[EventMessage](REQUEST_STREAM_BUFFER_SIZE)
        transport._request_streams[request_id] = (writer, reader)  # from here the router routes into it
        if lead_waits:
            self.primed.set()  # the first event is the message being sent, stored before the response
        self.task = asyncio.get_running_loop().create_task(self._serve(request_id, reader, lead_waits))

    async def _serve(self, request_id: str, reader: Any, lead_waits: bool) -> None:
        scope, receive, send, protocol_version = self._exchange
        transport = self._transport
        first: EventMessage | None = None
        lead = None
        if not lead_waits:
            try:
                lead = await transport._mint_priming_event(request_id, protocol_version)
            finally:
                self.primed.set()
        else:
            try:
                first = await reader.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                await transport._clean_up_memory_streams(request_id)
                response = transport._create_error_response(
                    "Session terminated before the request completed", HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_ERROR
                )
                await response(scope, receive, send)
                return
        await transport._stream(scope, receive, send, request_id, reader, first, protocol_version, lead)
