"""The hot methods of a duplex stream (`tools/call`, `ping`) answered by our code, not the SDK's dispatcher and kernel.

On stdio every message went through the SDK's ``JSONRPCDispatcher`` (a cancel scope, an in-flight record and a task
per request) and its ``ServerRunner`` (a middleware chain, a per-request ``ServerSession``, ``_meta`` parsed apart,
the params validated twice, the result validated and dumped again). :class:`DirectCalls` is offered each message the
transport reads (:meth:`DirectCalls.offer`) and takes the hot requests itself; everything else (``initialize``,
lists, resources, prompts, unknown methods, notifications, responses to our own requests) goes on to the SDK's
session unchanged, and a hot request the SDK would refuse before its handler (before the handshake, an envelope of
the other era, a malformed 2026-07-28 envelope) is left to the SDK too, so it is refused in the SDK's own words.

What a taken request gets is what the SDK's path gives it, step by step (``mcp.server.runner.ServerRunner._on_request``
and ``mcp.shared.jsonrpc_dispatcher.JSONRPCDispatcher._handle_request`` of the pinned SDK): the per-version surface
check and the typed params, the registered handler with a ``ServerRequestContext`` over the SDK's own
``ServerSession`` and ``Connection`` (the handshake's, read from the SDK's session, or the request's 2026-07-28
envelope), the result shaped by the SDK's ``_serialize`` (sieve, ``resultType``, ``serverInfo`` stamp), errors mapped
by the dispatcher's ladder, a task per request, ``notifications/cancelled`` cancelling it unanswered, and at the end
of input an in-flight call answered ``Connection closed``. tests/integration/test_direct_calls.py sends generated
requests through both paths and compares the answers. With any server middleware (tracing on) nothing is taken: the
SDK's span middleware wraps each request there.

The kernel's steps themselves (:class:`HotCore`) are shared with the HTTP transport, which answers a 2026-07-28
``tools/call`` or ``ping`` POST (transports/http/modern.py) and one of a 2025-era session
(transports/http/session_calls.py) through them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import anyio
import mcp_types as types
import pydantic_core
from anyio._core._eventloop import get_async_backend
from mcp.server.connection import Connection, NotifyOnlyOutbound
from mcp.server.context import ServerRequestContext
from mcp.server.runner import ServerRunner, aclose_shielded
from mcp.server.session import ServerSession
from mcp.shared._stream_protocols import WriteStream
from mcp.shared.dispatcher import CallOptions, Outbound, as_request_id, coerce_request_id
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.inbound import InboundLadderRejection, InboundModernRoute, classify_inbound_request
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data, progress_token_from_params
from mcp.shared.message import SessionMessage
from mcp.shared.transport_context import TransportContext
from mcp_types import methods as sdk_methods
from mcp_types.version import LATEST_MODERN_VERSION

log = logging.getLogger("nats_mcp.api.direct")

HOT_METHODS = frozenset({"tools/call", "ping"})
CLOSE_WRITE_TIMEOUT_S = 1.0
"""At the end of input, how long the ``Connection closed`` answer of a call still running may take (the SDK's 1 s)."""

_DUPLEX = TransportContext(kind="jsonrpc", can_send_request=True)
_NO_REQUESTS = TransportContext(kind="jsonrpc", can_send_request=False)


def progress_params(token: Any, progress: float, total: float | None, message: str | None) -> dict[str, Any]:
    """The params of a ``notifications/progress`` (the fields the caller left out are not sent)."""
    params: dict[str, Any] = {"progressToken": token, "progress": progress}
    if total is not None:
        params["total"] = total
    if message is not None:
        params["message"] = message
    return params


class WriterOutbound:
    """Notifications written straight to the transport's one writer (what the SDK dispatcher's ``notify`` does)."""

    def __init__(self, write: WriteStream[SessionMessage]) -> None:
        self._write = write

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        if params is None:  # left unset, not null (JSON-RPC forbids "params": null), as the dispatcher does
            message = types.JSONRPCNotification(jsonrpc="2.0", method=method)
        else:
            message = types.JSONRPCNotification(jsonrpc="2.0", method=method, params=dict(params))
        try:
            await self._write.send(SessionMessage(message))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.debug("dropped %s: write stream closed", method)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)  # 2026-07-28 forbids requests from the server


@dataclass(eq=False)
class CallChannel:
    """One taken request's ``DispatchContext``: its id, progress token, cancel flag and back-channel."""

    transport: TransportContext
    request_id: types.RequestId
    outbound: Outbound
    progress_token: types.ProgressToken | None
    message_metadata: None = None
    closed: bool = False
    cancelled: bool = False
    """The client cancelled the request (``notifications/cancelled``): it is not answered."""
    _cancel_event: anyio.Event | None = None

    @property
    def cancel_requested(self) -> anyio.Event:
        """The ``DispatchContext``'s event, made when someone reads it (few calls do; the flag is ``cancelled``)."""
        if self._cancel_event is None:
            self._cancel_event = anyio.Event()
            if self.cancelled:
                self._cancel_event.set()
        return self._cancel_event

    def cancel(self) -> None:
        self.cancelled = True
        if self._cancel_event is not None:
            self._cancel_event.set()

    @property
    def can_send_request(self) -> bool:
        return self.transport.can_send_request and not self.closed

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        if self.closed:
            log.debug("dropped %s: request finished", method)
            return
        await self.outbound.notify(method, params, opts)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        if not self.can_send_request:
            raise NoBackChannelError(method)
        return await self.outbound.send_raw_request(method, params, opts)

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if self.progress_token is not None:
            await self.notify("notifications/progress", progress_params(self.progress_token, progress, total, message))


class _Shaping:
    """What ``ServerRunner._serialize`` reads of the server, with the ``serverInfo`` stamp dumped once.

    The SDK hands each result a fresh copy of the stamp because a result may be kept and changed by whoever holds
    it; here a result is shaped and written out at once, and nothing writes into its ``_meta``.
    """

    def __init__(self, server: Any) -> None:
        self.cache_hints = server.cache_hints
        self.server_info_stamp = server.server_info_stamp


@dataclass(eq=False)
class _InFlight:
    scope: anyio.CancelScope
    channel: CallChannel


class HotCore:
    """The SDK kernel's steps for the hot methods of one server, shared by every transport that answers them itself
    (stdio's :class:`DirectCalls`, HTTP's transports/http/modern.py): the handler lookup, the typed params, the
    request context, the result shaping and the error mapping, with no middleware chain (see :attr:`enabled`)."""

    def __init__(self, server: Any, lifespan_state: Any, session: Connection | None = None) -> None:
        self.server = server
        self.lifespan_state = lifespan_state
        # The SDK's result shaping reads two things of the server; the kernel is built once, not per request.
        shaping = session or Connection.from_envelope(LATEST_MODERN_VERSION, None, None)
        self._shaper: ServerRunner[Any] = ServerRunner(cast(Any, _Shaping(server)), shaping, lifespan_state)
        self.entries = {m: e for m in HOT_METHODS if (e := server.get_request_handler(m)) is not None}
        self._last_envelope: tuple[str, Any, Any, Connection] | None = None

    @property
    def enabled(self) -> bool:
        return not self.server.middleware  # middleware (the tracing span) must see every request: the SDK's path

    def takes(self, method: Any) -> bool:
        """Whether a request of ``method`` is answered here rather than by the SDK."""
        return method in self.entries and self.enabled

    def modern_connection(self, route: InboundModernRoute, outbound: Outbound) -> Connection:
        """A fresh connection for one 2026-07-28 request, as ``Connection.from_envelope`` makes it; the client's
        identity typed once while it does not change (a client sends the same envelope on every request; the SDK
        types it again each time)."""
        info, capabilities = route.client_info, route.client_capabilities
        last = self._last_envelope
        if last is None or last[0] != route.protocol_version or last[1] != info or last[2] != capabilities:
            typed = Connection.from_envelope(route.protocol_version, info, capabilities)
            last = self._last_envelope = (route.protocol_version, info, capabilities, typed)
        connection = Connection(outbound, protocol_version=last[0], client_params=last[3].client_params)
        connection.client_capabilities = last[3].client_capabilities
        connection.initialized.set()
        return connection

    async def handle(
        self,
        request: types.JSONRPCRequest,
        connection: Connection,
        channel: Any,
        http_request: Any = None,
        close_sse_stream: Any = None,
        close_standalone_sse_stream: Any = None,
    ) -> dict[str, Any]:
        """The SDK kernel's steps for one request, less its middleware chain (there is none: see ``enabled``);
        ``http_request``: the Starlette request an HTTP entry gives the context (``ServerRequestContext.request``),
        the ``close_*`` callbacks those a 2025-era session's transport gives it (transports/http/session_calls.py)."""
        method, params = request.method, request.params
        version = connection.protocol_version
        try:
            sdk_methods.validate_client_request(method, version, params)
        except KeyError:
            raise MCPError(code=types.METHOD_NOT_FOUND, message="Method not found", data=method) from None
        entry = self.entries[method]
        typed = entry.params_type.model_validate({} if params is None else params, by_name=False)
        meta = typed.meta  # what the SDK lifts out of the same params with a model of its own
        ctx: ServerRequestContext[Any, Any] = ServerRequestContext(
            session=ServerSession(channel, connection, request_meta=meta),
            lifespan_context=self.lifespan_state,
            method=method,
            params=params,
            request_id=request.id,
            meta=meta,
            protocol_version=version,
            request=http_request,
            close_sse_stream=close_sse_stream,
            close_standalone_sse_stream=close_standalone_sse_stream,
        )
        result = await entry.handler(ctx, typed)
        if isinstance(result, types.ErrorData):
            raise MCPError.from_error_data(result)
        return self._shaper._serialize(method, version, result)

    @staticmethod
    def error_data(exc: Exception, modern: bool, method: str) -> types.ErrorData:
        """The wire error of a handler's exception: the dispatcher's ladder, then the era's fallback."""
        error = handler_exception_to_error_data(exc)
        if error is not None:
            return error
        if modern:  # the SDK's 2026-07-28 entries (``modern_error_data``): an internal error, no details
            log.exception("modern request handler raised")
            return types.ErrorData(code=types.INTERNAL_ERROR, message="Internal server error")
        log.exception("handler for %r raised", method)  # its handshake loop: code 0, the text (v1 compatibility)
        return types.ErrorData(code=0, message=str(exc))

    @staticmethod
    async def finish(connection: Connection) -> None:
        """The SDK unwinds each 2026-07-28 request's connection under a shielded, bounded scope; one with nothing
        registered on it (the usual case) has nothing to unwind."""
        if getattr(connection.exit_stack, "_exit_callbacks", True):
            await aclose_shielded(connection)


class DirectCalls:
    """Takes the hot requests of one stream connection; ``session`` is the SDK's handshake connection (None: the
    2026-07-28 era, where each request brings its own envelope)."""

    def __init__(
        self,
        server: Any,
        lifespan_state: Any,
        write: WriteStream[SessionMessage],
        session: Connection | None,
    ) -> None:
        self._core = HotCore(server, lifespan_state, session)
        self._write = write
        self._session = session
        self._writer_outbound = WriterOutbound(write)
        self._modern_outbound = NotifyOnlyOutbound(self._writer_outbound)
        self._in_flight: dict[types.RequestId, _InFlight] = {}
        self._tasks: dict[asyncio.Task[None], anyio.CancelScope] = {}
        self._loop = asyncio.get_running_loop()
        self._backend = get_async_backend()  # its scopes, without looking the backend up on every call
        self.taken = 0
        """How many requests this path has answered (or is answering) instead of the SDK's."""

    @property
    def enabled(self) -> bool:
        return self._core.enabled

    def offer(self, item: SessionMessage | Exception) -> bool:
        """Take ``item`` (True: it is ours now and the SDK must not see it) or leave it to the SDK (False)."""
        if not isinstance(item, SessionMessage):
            return False
        message = item.message
        if isinstance(message, types.JSONRPCNotification):
            if message.method == "notifications/cancelled":
                self._cancel(message.params)  # and the SDK sees it too: it may be one of its own requests
            return False
        if not isinstance(message, types.JSONRPCRequest) or not self._core.takes(message.method):
            return False
        connection = self._connection_for(message.method, message.params)
        if connection is None:
            return False
        modern = self._session is None
        channel = CallChannel(
            _NO_REQUESTS if modern else _DUPLEX,
            message.id,
            self._writer_outbound if modern else connection.outbound,
            progress_token_from_params(message.params),
        )
        scope = self._backend.create_cancel_scope()  # one per call: a cancel by the client or at the end of input
        self._in_flight[coerce_request_id(message.id)] = _InFlight(scope, channel)  # a reused id replaces, as the SDK
        task = self._loop.create_task(self._answer(message, connection, channel, scope))
        self._tasks[task] = scope
        task.add_done_callback(self._forget)
        self.taken += 1
        return True

    def _connection_for(self, method: str, params: Mapping[str, Any] | None) -> Connection | None:
        """The connection a hot request runs on, or None where the SDK answers it (it refuses it before any handler)."""
        envelope = isinstance(meta := (params or {}).get("_meta"), Mapping) and types.PROTOCOL_VERSION_META_KEY in meta
        if self._session is not None:
            return self._session if self._session.initialize_accepted and not envelope else None
        route = classify_inbound_request({"method": method, "params": params})
        if isinstance(route, InboundLadderRejection):
            return None
        return self._core.modern_connection(route, self._modern_outbound)

    def _cancel(self, params: Mapping[str, Any] | None) -> None:
        request_id = as_request_id((params or {}).get("requestId"))
        if request_id is not None and (call := self._in_flight.get(coerce_request_id(request_id))) is not None:
            call.channel.cancel()
            call.scope.cancel()

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def close(self) -> None:
        """End of input: cancel what still runs (each answers ``Connection closed``) and wait for it.

        Through each call's cancel scope, as the SDK's dispatcher cancels its task group: the cancellation is
        delivered again at every await until the call ends, not once (a tool that absorbs one, a claim cut short,
        does not turn it into a result).
        """
        tasks = list(self._tasks.items())
        for _, stop in tasks:
            stop.cancel()
        if tasks:
            await asyncio.gather(*(task for task, _ in tasks), return_exceptions=True)

    async def _answer(
        self, request: types.JSONRPCRequest, connection: Connection, channel: CallChannel, scope: anyio.CancelScope
    ) -> None:
        """Run one request and write its answer: the SDK dispatcher's ``_handle_request``, for our requests.

        ``scope`` is cancelled by the client's ``notifications/cancelled`` (``channel.cancelled``: no answer) or at
        the end of input (answered ``Connection closed``); either way the scope absorbs the cancellation."""
        answered = False
        with scope:
            try:
                try:
                    result = await self._core.handle(request, connection, channel)
                finally:
                    channel.closed = True
                    key = coerce_request_id(request.id)
                    if (entry := self._in_flight.get(key)) is not None and entry.channel is channel:
                        del self._in_flight[key]
                if not channel.cancelled:
                    answered = True
                    await self._send_result(request.id, result)
            except anyio.get_cancelled_exc_class():
                if not answered and not channel.cancelled:
                    closed = types.ErrorData(code=types.CONNECTION_CLOSED, message="Connection closed")
                    with anyio.move_on_after(CLOSE_WRITE_TIMEOUT_S, shield=True):
                        await self._send(types.JSONRPCError(jsonrpc="2.0", id=request.id, error=closed))
                raise
            except Exception as exc:
                error = HotCore.error_data(exc, self._session is None, request.method)
                if not channel.cancelled:
                    await self._send(types.JSONRPCError(jsonrpc="2.0", id=request.id, error=error))
            finally:
                if self._session is None:
                    await HotCore.finish(connection)

    async def _send_result(self, request_id: types.RequestId, result: dict[str, Any]) -> None:
        """A success answer, written as the SDK writes ``JSONRPCResponse(...).model_dump_json(by_alias=True,
        exclude_unset=True)`` (its fields in that order; ``result`` is already the JSON-mode dump of ``_serialize``),
        without building and validating the envelope's model, where the stream takes bytes (transports/stdio.py)."""
        send_json = getattr(self._write, "send_json", None)
        if send_json is None:
            return await self._send(types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result))
        try:
            await send_json(pydantic_core.to_json({"jsonrpc": "2.0", "id": request_id, "result": result}))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.debug("dropped the answer to %r: write stream closed", request_id)

    async def _send(self, message: types.JSONRPCResponse | types.JSONRPCError) -> None:
        try:
            await self._write.send(SessionMessage(message))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.debug("dropped the answer to %r: write stream closed", message.id)
