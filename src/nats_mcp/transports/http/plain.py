"""The plain-answer boundary: a quick request of an established session is answered as one JSON body, not an SSE stream.

The SDK answers every request POST of a 2025-era session with an SSE stream (unless the whole transport is in JSON
mode): a priming event and the response, each published to NATS for ``Last-Event-ID`` resumption, four tasks of
``sse_starlette`` per response, and a connection the SDK client then drops (it closes an SSE response as soon as
the answer is in, before the body's end, so httpx cannot reuse the connection: one TCP connection per call). The
protocol lets the server choose either form when the client accepts both, so :class:`PlainAnswers` (the session's
transport) *holds* the choice: it dispatches the request as the SDK does and waits up to :data:`HOLD_S` for what
the server sends on the request's stream.

* the response comes first (a quick call, almost all of them): one ``application/json`` body, nothing stored in
  NATS for it (there is no stream to resume), the connection kept;
* a notification comes first (a progress or log message about the request): an SSE stream, that notification its
  first event (stored, with its id), then the rest as the SDK streams them;
* nothing within :data:`HOLD_S` (a claim or a read waiting for messages): an SSE stream that starts with the priming
  event, as the SDK's, so a dropped stream resumes with ``Last-Event-ID`` on any process.

Only the methods in :data:`PLAIN_METHODS` of a session's requests are held (``initialize``, the 2026-07-28 path and
everything else is the SDK's), and only when the client accepts both forms (what the SDK requires of a POST) and
sent no ``progressToken`` (it asked for a stream of progress). What is checked before dispatch is the SDK's own
code (content type, envelope validation, session), so errors read the same on both paths. Once those pass, a
``tools/call`` or ``ping`` is run by session_calls.py (api/direct.py's kernel on the session's connection) instead of
the SDK's dispatcher, answered in the same forms by the same rules.
"""

from __future__ import annotations

import logging
from functools import partial
from http import HTTPStatus
from typing import Any, Protocol

import anyio
from mcp.server.streamable_http import (
    CONTENT_TYPE_SSE,
    MCP_SESSION_ID_HEADER,
    REQUEST_STREAM_BUFFER_SIZE,
    EventMessage,
    SSEEvent,
    StreamableHTTPServerTransport,
    check_accept_headers,
)
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    INTERNAL_ERROR,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from nats_mcp.transports.http.events import SessionEventStore
from nats_mcp.transports.http.sessions import BODY_KEY

log = logging.getLogger("nats_mcp.http")

HOLD_S = 0.5
"""How long a request waits for its answer before its response becomes an SSE stream (resumable from then on)."""
PLAIN_METHODS = frozenset({"tools/call", "tools/list", "resources/read", "ping"})
"""The requests that may be answered plain: the hot ones. Others (subscriptions, prompts...) keep the SDK's stream."""


class OwnCalls(Protocol):
    """What a session's own answering of its hot requests offers the transport (session_calls.py's SessionCalls)."""

    def takes(self, message: JSONRPCRequest) -> bool: ...

    def end(self) -> None: ...

    async def answer(
        self,
        transport: PlainAnswers,
        scope: Scope,
        receive: Receive,
        send: Send,
        message: JSONRPCRequest,
        request: Request,
        protocol_version: str,
    ) -> None: ...


class PlainAnswers(StreamableHTTPServerTransport):
    """The SDK's session transport, answering quick requests as plain JSON (the module docstring says when)."""

    own: OwnCalls | None = None
    """Set once the session's connection exists: the hot requests it answers itself (session_calls.py)."""

    async def terminate(self) -> None:
        if self.own is not None:
            self.own.end()  # its calls end with the session, as the dispatcher's handlers do
        await super().terminate()

    async def _handle_post_request(self, scope: Scope, request: Request, receive: Receive, send: Send) -> None:
        message = self._holdable(scope, request)
        if message is None:
            await super()._handle_post_request(scope, request, receive, send)
            return
        if not await self._validate_request_headers(request, send):
            return
        protocol_version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER, DEFAULT_NEGOTIATED_VERSION)
        own = self.own
        if own is not None and own.takes(message):
            await own.answer(self, scope, receive, send, message, request, protocol_version)
            return
        writer = self._read_stream_writer
        assert writer is not None  # connect() ran: the session's server task is up before it takes requests
        request_id = str(message.id)
        stream_writer, stream_reader = anyio.create_memory_object_stream[EventMessage](REQUEST_STREAM_BUFFER_SIZE)
        self._request_streams[request_id] = (stream_writer, stream_reader)
        store = self._event_store if isinstance(self._event_store, SessionEventStore) else None
        if store is not None:
            store.held.add(request_id)
        first: EventMessage | None = None
        streaming = False
        try:
            await writer.send(self._create_session_message(message, request, request_id, protocol_version))
            with anyio.move_on_after(HOLD_S):
                first = await stream_reader.receive()
            if store is not None:
                store.held.discard(request_id)
            if first is None:  # still waiting: from here on a stream, resumable from its priming event
                first = _next_now(stream_reader)
            if first is None or not isinstance(first.message, JSONRPCResponse | JSONRPCError):
                streaming = True
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            log.debug("session ended with request %s in flight; no response to send", request_id)
        finally:
            if store is not None:
                store.held.discard(request_id)
            if not streaming:
                await self._clean_up_memory_streams(request_id)
        if streaming:
            await self._stream(scope, receive, send, request_id, stream_reader, first, protocol_version)
            return
        if first is None:
            response = self._create_error_response(
                "Session terminated before the request completed", HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_ERROR
            )
        else:
            response = self._create_json_response(first.message)
        await response(scope, receive, send)

    def _holdable(self, scope: Scope, request: Request) -> JSONRPCRequest | None:
        """The request, if it may be held: a hot method of an established session, from a client accepting both
        forms, already parsed by the protocol gate (so it is validated once here, where the SDK would)."""
        if not self.mcp_session_id or self.is_json_response_enabled:
            return None
        parsed: Any = scope.get(BODY_KEY)
        if not isinstance(parsed, dict) or parsed.get("method") not in PLAIN_METHODS or "id" not in parsed:
            return None
        params = parsed.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if isinstance(meta, dict) and "progressToken" in meta:
            return None  # the client wants a stream of progress
        if not self._check_content_type(request) or check_accept_headers(request) != (True, True):
            return None  # the SDK's error answers
        try:
            message = jsonrpc_message_adapter.validate_python(parsed, by_name=False)
        except ValidationError:
            return None  # the SDK's validation error answer
        return message if isinstance(message, JSONRPCRequest) else None

    async def _stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        reader: Any,
        first: EventMessage | None,
        protocol_version: str,
        primed: SSEEvent | None = None,
    ) -> None:
        """The SDK's SSE answer from here: ``first`` (a notification already stored) or else a priming event
        (``primed``: one already minted)."""
        lead = self._create_event_data(first) if first is not None else primed
        if lead is None:
            lead = await self._mint_priming_event(request_id, protocol_version)
        sse_writer, sse_reader = anyio.create_memory_object_stream[SSEEvent](0)
        self._sse_stream_writers[request_id] = sse_writer
        headers = {
            "Cache-Control": "no-cache, no-transform",
            "Connection": "keep-alive",
            "Content-Type": CONTENT_TYPE_SSE,
            MCP_SESSION_ID_HEADER: self.mcp_session_id or "",
        }
        response = EventSourceResponse(
            content=sse_reader,
            data_sender_callable=partial(self._run_sse_writer, request_id, sse_writer, reader, lead),
            headers=headers,
        )
        try:
            await response(scope, receive, send)
        except Exception:
            log.exception("SSE response error")
            await sse_writer.aclose()
            await self._clean_up_memory_streams(request_id)
        finally:
            await sse_reader.aclose()


def _next_now(reader: Any) -> EventMessage | None:
    """What the request's stream holds already (the answer may have come as the hold ended), else None."""
    try:
        found: EventMessage = reader.receive_nowait()
    except anyio.WouldBlock:
        return None
    return found


def plain(transport: StreamableHTTPServerTransport) -> StreamableHTTPServerTransport:
    """``transport`` (one the SDK's session manager made) answering as :class:`PlainAnswers` does: the SDK builds
    its transports itself, and the subclass adds behaviour only, no state."""
    transport.__class__ = PlainAnswers
    return transport
