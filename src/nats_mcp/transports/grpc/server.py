"""The gRPC transport boundary (server side): MCP JSON-RPC messages tunnelled over gRPC, mutual TLS by default.

The contract is ``proto/nats_mcp/v1/transport.proto``: every frame is one complete JSON-RPC message, byte for
byte (the MCP spec's rule for custom transports). ``Session`` is a bidirectional stream served exactly like
stdio — one SDK server loop per stream, both protocol revisions (2025-11-25 handshake, 2026-07-28 envelope);
``Call`` carries one request and streams its notifications, then exactly one response; ``Listen`` carries one
``subscriptions/listen`` request and streams its change notifications until the client cancels.

Like the HTTP transport this one only says who calls: each call or stream is admitted once
(``transports/grpc/admission.py``: the client certificate and/or a bearer JWT or API key -> the request's identity,
through the security core), and every tool call goes through the guard. Refusals are gRPC statuses
(UNAUTHENTICATED with a ``www-authenticate`` trailer, PERMISSION_DENIED, RESOURCE_EXHAUSTED with a ``retry-after``
trailer for rate limits, INVALID_ARGUMENT), each audited. TLS certificates, their rotation and the channel options
are ``transports/grpc/tls.py``. On a ``Session`` stream a refusal of one request (policy, rate) is that request's
error, so the other requests of the session carry on. Handshake refusals (no client certificate, an unknown CA, an
expired certificate) happen inside the gRPC core before any call exists: the client sees UNAVAILABLE and no audit
record can be written from Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import grpc
import mcp_types as types
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from mcp.server import Server
from mcp.server.runner import serve_dual_era_loop
from mcp.shared._context_streams import ContextReceiveStream, ContextSendStream, create_context_streams
from mcp.shared.message import SessionMessage

from nats_mcp.api.tools.base import tool_error
from nats_mcp.config.grpc import GrpcSettings
from nats_mcp.config.settings import Settings
from nats_mcp.security import identity
from nats_mcp.security.guard import CallContext, Refused
from nats_mcp.security.identity import Identity
from nats_mcp.security.principal import Principal
from nats_mcp.transports.grpc.admission import (
    Admission,
    CallRefused,
    Gatekeeper,
    call_metadata,
    current_identity,
    current_principal,
    first_refusal,
    grpc_caller,
)
from nats_mcp.transports.grpc.gen.transport_pb2 import Frame
from nats_mcp.transports.grpc.single import answer
from nats_mcp.transports.grpc.tls import server_credentials, server_options

log = logging.getLogger("nats_mcp.grpc")

__all__ = [  # admission (who calls) and TLS live beside this module; these are what assembling a server names
    "Admission",
    "CallRefused",
    "GrpcTransport",
    "McpGrpcService",
    "current_identity",
    "current_principal",
    "grpc_caller",
    "resource_url",
    "started",
]

SERVICE = "nats_mcp.v1.McpTransport"
PROTOCOL_KEY = "mcp-protocol-version"
METHOD_KEY = "mcp-method"
NAME_KEYS = ("mcp-name", "mcp-tool-name", "mcp-resource-uri")
"""``mcp-name`` and the aliases Google's Python transport uses."""
ENVELOPE_VERSION = "io.modelcontextprotocol/protocolVersion"
LISTEN = "subscriptions/listen"
_NAMED_PARAM = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "resources/subscribe": "uri",
    "resources/unsubscribe": "uri",
}


def rate_limited(answer: types.JSONRPCResponse | types.JSONRPCError) -> tuple[str, str] | None:
    """(message, retry-after seconds) when the guard refused a request for its rate, else None.

    A tool call answers a tool error ``rate_limited`` (with ``retryAfterS``), a resource read a JSON-RPC error whose
    data has that code; on ``Call`` and ``Listen`` both become RESOURCE_EXHAUSTED, as the contract says.
    """
    if isinstance(answer, types.JSONRPCError):
        data = answer.error.data
        error = data if isinstance(data, dict) else None
        message = answer.error.message
    else:
        error = tool_error(answer.result)
        message = str(error.get("message", "")) if error is not None else ""
    if not isinstance(error, dict) or error.get("code") != "rate_limited":
        return None
    retry = error.get("retryAfterS")
    seconds = max(1, math.ceil(float(retry))) if isinstance(retry, int | float) else 1
    return message or "too many calls", str(seconds)


def read_frame(data: bytes) -> Frame | None:
    """A ``Frame`` from the wire, or None for bytes that are not one: our handlers answer INVALID_ARGUMENT then,
    where grpc's own deserializer failure is an UNKNOWN or INTERNAL status carrying the exception's text."""
    try:
        return Frame.FromString(data)
    except DecodeError:
        return None


def resource_url(settings: Settings, port: int) -> str:
    """The audience tokens may name besides ``urn:nats-mcp:local``: ``grpc.public_url``, else the bind address."""
    g = settings.grpc
    if g.public_url:
        return g.public_url.rstrip("/")
    host = f"[{g.host}]" if ":" in g.host else g.host
    return f"{'grpcs' if g.tls else 'grpc'}://{host}:{port}"


# ---- the service ---------------------------------------------------------------------------------------------------


class McpGrpcService:
    """The ``McpTransport`` service over one SDK server (shared by every stream; state lives in NATS)."""

    def __init__(self, server: Server[Any], admission: Admission) -> None:
        self.server = server
        self.admission = admission
        self.gate = Gatekeeper(admission)
        self.guard = admission.guard
        self.grpc_settings = admission.settings.grpc
        self.namespace = admission.settings.resolved_namespace
        self.project_id = admission.settings.resolved_project_id
        self.init_options = server.create_initialization_options()
        self.lifespan_state: Any = None

    def audit(self, kind: Any, principal: Principal | None, peer: str | None, outcome: str, reason: str) -> None:
        self.gate.audit(kind, principal, peer, outcome, reason)

    async def admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        """Who calls (transports/grpc/admission.py); CallRefused (audited) when the call may not act at all."""
        return await self.gate.admit(context)

    def json_of(self, principal: Principal, frame: Frame | None) -> bytes:
        """The JSON of a frame; INVALID_ARGUMENT (audited) for bytes that were not a ``Frame`` at all."""
        if frame is None:
            self.audit("denied", principal, principal.peer, "invalid_argument", "not_a_frame")
            raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "the message is not a nats_mcp.v1.Frame")
        return frame.json

    def check_frame(self, principal: Principal, raw: bytes) -> types.JSONRPCMessage:
        """Size, depth and shape of one incoming JSON-RPC message (RESOURCE_EXHAUSTED / INVALID_ARGUMENT)."""
        limit = self.grpc_settings.max_message_bytes
        if len(raw) > limit:
            self.audit("limit_exceeded", principal, principal.peer, "limit_exceeded", "frame_too_large")
            raise CallRefused(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"the frame is {len(raw)} bytes; the limit is {limit}"
            )
        try:
            self.guard.check_raw(CallContext(principal, "grpc", self.namespace), raw)
        except Refused as refused:  # audited by the guard
            raise CallRefused(grpc.StatusCode.RESOURCE_EXHAUSTED, refused.message) from None
        try:
            return types.jsonrpc_message_adapter.validate_json(raw, by_name=False)
        except ValueError:
            self.audit("denied", principal, principal.peer, "invalid_argument", "not_jsonrpc")
            raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "a frame must hold one JSON-RPC message") from None

    def check_metadata(self, principal: Principal, metadata: Mapping[str, str], message: types.JSONRPCMessage) -> None:
        """``mcp-method``, ``mcp-name`` (and aliases) and ``mcp-protocol-version`` must agree with the body."""
        method = getattr(message, "method", None)
        params = getattr(message, "params", None)
        params = params if isinstance(params, dict) else {}
        problems = []
        claimed = metadata.get(METHOD_KEY)
        if claimed is not None and claimed != method:
            problems.append(f"{METHOD_KEY} {claimed!r} but the body calls {method!r}")
        for key in NAME_KEYS:
            claimed = metadata.get(key)
            if claimed is None:
                continue
            field = _NAMED_PARAM.get(str(method))
            actual = params.get(field) if field else None
            if claimed != actual:
                problems.append(f"{key} {claimed!r} but the body names {actual!r}")
        claimed = metadata.get(PROTOCOL_KEY)
        if claimed is not None:
            meta = params.get("_meta")
            actual = meta.get(ENVELOPE_VERSION) if isinstance(meta, dict) else None
            if method == "initialize":
                actual = params.get("protocolVersion")
            if actual is not None and claimed != actual:
                problems.append(f"{PROTOCOL_KEY} {claimed!r} but the body speaks {actual!r}")
        if problems:
            self.audit("denied", principal, principal.peer, "invalid_argument", "header_mismatch")
            raise CallRefused(
                grpc.StatusCode.INVALID_ARGUMENT, "metadata disagrees with the body: " + "; ".join(problems)
            )

    # -- the RPCs ----------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _loop(
        self, who: Identity
    ) -> AsyncIterator[tuple[ContextSendStream[SessionMessage | Exception], ContextReceiveStream[SessionMessage]]]:
        """One SDK server loop over a memory stream pair, acting as ``who``; yields (to server, from server)."""
        identity.enter(who)  # read by the tool handlers through current_identity(), in this task's context
        to_server, server_in = create_context_streams[SessionMessage | Exception](0)
        server_out, from_server = create_context_streams[SessionMessage](0)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._run_loop, server_in, server_out)
                try:
                    yield to_server, from_server
                finally:
                    tg.cancel_scope.cancel()  # the loop stops before its streams are closed under it
        finally:
            for stream in (to_server, from_server, server_in, server_out):
                stream.close()

    async def _run_loop(self, read: Any, write: Any) -> None:
        await serve_dual_era_loop(
            self.server, read, write, lifespan_state=self.lifespan_state, init_options=self.init_options
        )

    @staticmethod
    def _frame(message: SessionMessage) -> Frame:
        return Frame(json=message.message.model_dump_json(by_alias=True, exclude_unset=True).encode())

    async def session(
        self, requests: AsyncIterator[Frame | None], context: grpc.aio.ServicerContext[Frame, Frame]
    ) -> None:
        """``Session``: frames in go to the server loop, its messages come back, until the client closes its side."""
        refusal: CallRefused | None = None
        try:
            who = await self.admit(context)
            principal = who.principal
            metadata = call_metadata(context)
            # Admitted: say so at once. Clients wait for this before their first frame, since a write racing a
            # refusal makes grpc's Python client replace the refusal's status with INTERNAL.
            await context.send_initial_metadata(())
            async with self._loop(who) as (to_server, from_server):

                async def pump_out() -> None:
                    async with from_server:
                        async for message in from_server:
                            await context.write(self._frame(message))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(pump_out)
                    first = True
                    async with to_server:
                        async for frame in requests:
                            message = self.check_frame(principal, self.json_of(principal, frame))
                            if first:
                                self.check_metadata(principal, metadata, message)
                                first = False
                            await to_server.send(SessionMessage(message))
        except* CallRefused as group:
            refusal = first_refusal(group)
        if refusal is not None:  # aborted here: raised inside except* the abort would reach gRPC wrapped in a group
            await refusal.abort(context)

    async def call(self, request: Frame | None, context: grpc.aio.ServicerContext[Frame, Frame]) -> None:
        """``Call``: one request; its notifications, then exactly one response. Cancelling the call cancels it."""
        await self._one(request, context, listen=False)

    async def listen(self, request: Frame | None, context: grpc.aio.ServicerContext[Frame, Frame]) -> None:
        """``Listen``: one ``subscriptions/listen`` request; change notifications until the client cancels."""
        await self._one(request, context, listen=True)

    async def _one(
        self, request: Frame | None, context: grpc.aio.ServicerContext[Frame, Frame], *, listen: bool
    ) -> None:
        refusal: CallRefused | None = None
        try:
            who = await self.admit(context)
            principal = who.principal
            message = self.check_frame(principal, self.json_of(principal, request))
            if listen and getattr(message, "method", None) != LISTEN:
                self.audit("denied", principal, principal.peer, "invalid_argument", "not_listen")
                raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, f"Listen carries one {LISTEN} request")
            self.check_metadata(principal, call_metadata(context), message)
            await self.exchange(who, message, lambda out: context.write(self._frame(out)))
        except* CallRefused as group:
            refusal = first_refusal(group)
        if refusal is not None:  # aborted here: raised inside except* the abort would reach gRPC wrapped in a group
            await refusal.abort(context)

    async def exchange(
        self, who: Identity, message: types.JSONRPCMessage, emit: Callable[[SessionMessage], Awaitable[None]]
    ) -> None:
        """Run one checked request as ``who``; ``emit`` gets its notifications, then its response.

        CallRefused (audited) when ``message`` is not a request, or when the guard refused it for its rate.
        """
        if not isinstance(message, types.JSONRPCRequest):
            self.audit("denied", who.principal, who.peer, "invalid_argument", "not_a_request")
            raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "a call carries one JSON-RPC request")
        identity.enter(who)  # read by the tool handlers through current_identity(), in this task's context
        reply = await answer(self.server, self.lifespan_state, message, emit)
        throttled = rate_limited(reply)
        if throttled is not None:  # the guard refused the request itself: a status, not a result
            retry_after = (("retry-after", throttled[1]),)
            raise CallRefused(grpc.StatusCode.RESOURCE_EXHAUSTED, throttled[0], trailers=retry_after)
        await emit(SessionMessage(reply))

    def handler(self) -> grpc.GenericRpcHandler:
        frame_in, frame_out = read_frame, Frame.SerializeToString
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Session": grpc.stream_stream_rpc_method_handler(self.session, frame_in, frame_out),
                "Call": grpc.unary_stream_rpc_method_handler(self.call, frame_in, frame_out),
                "Listen": grpc.unary_stream_rpc_method_handler(self.listen, frame_in, frame_out),
            },
        )


# ---- the server ----------------------------------------------------------------------------------------------------


class GrpcTransport:
    """A started ``grpc.aio`` server with the MCP service and ``grpc.health.v1`` (NATS connectivity)."""

    def __init__(
        self,
        service: McpGrpcService,
        *,
        insecure: bool,
        extra: Sequence[tuple[str, grpc.GenericRpcHandler]] = (),
    ) -> None:
        self.service = service
        self.insecure = insecure
        self.extra = list(extra)
        """More services on the same port and admission (the typed adapter): (full service name, handler)."""
        self.settings = service.grpc_settings
        self.health = health_aio.HealthServicer()
        self.port = 0
        self.health_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self._lifespan: contextlib.AsyncExitStack | None = None

    async def bind(self) -> int:
        """Bind (not serving yet) and return the port (the OS's choice for port 0)."""
        g = self.settings
        server = grpc.aio.server(options=server_options(g), maximum_concurrent_rpcs=g.max_concurrent_rpcs)
        handlers = [self.service.handler(), *(handler for _, handler in self.extra)]
        names = [SERVICE, *(name for name, _ in self.extra)]
        server.add_generic_rpc_handlers(handlers)
        await self.set_nats(False)  # until NATS says it is connected
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if g.reflection:
            from grpc_reflection.v1alpha import reflection

            reflection.enable_server_reflection(
                [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
            )
        address = f"[{g.host}]:{g.port}" if ":" in g.host else f"{g.host}:{g.port}"
        if self.insecure:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, server_credentials(g))
        if port == 0:
            raise OSError(f"cannot listen on {address}")
        self._server, self.port = server, port
        if g.health_port is not None:
            self.health_port = self._bind_health(g)
        return port

    def _bind_health(self, g: GrpcSettings) -> int:
        """The plaintext health-only server (the same health states; no MCP service, no reflection)."""
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)], maximum_concurrent_rpcs=64)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        address = f"[{g.host}]:{g.health_port}" if ":" in g.host else f"{g.host}:{g.health_port}"
        port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot listen on {address} (grpc.health_port)")
        self._health_server = server
        return port

    async def serve(self) -> None:
        """Start answering calls (after :meth:`bind`); returns once the server listens."""
        if self._server is None:
            raise RuntimeError("bind() first")
        stack = contextlib.AsyncExitStack()
        self.service.lifespan_state = await stack.enter_async_context(self.service.server.lifespan(self.service.server))
        self._lifespan = stack
        await self._server.start()
        if self._health_server is not None:
            await self._health_server.start()

    async def set_nats(self, connected: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if connected else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE):
            await self.health.set(name, status)

    async def on_nats_event(self, event: str, _data: dict[str, Any]) -> None:
        """Connection observer: health follows NATS connectivity."""
        if event in ("connected", "reconnected"):
            await self.set_nats(True)
        elif event in ("disconnected", "closed", "connect_failed"):
            await self.set_nats(False)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def drain(self, delay_s: float, timeout_s: float, again: asyncio.Event) -> None:
        """The graceful stop of a signal: health NOT_SERVING at once (load balancers stop sending), calls still
        taken for ``delay_s``, then no new ones (UNAVAILABLE, which clients retry on another connection) while
        those in flight get ``timeout_s``; ``again`` (a second signal) cuts either wait short."""
        await self.health.enter_graceful_shutdown()
        log.info("draining: grpc.health.v1 answers NOT_SERVING")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(again.wait(), delay_s)
        if self._server is None:
            return
        log.info("draining: no new calls; calls in flight get %s s", timeout_s)
        stopping = asyncio.ensure_future(self._server.stop(timeout_s))
        cut = asyncio.ensure_future(again.wait())
        try:
            await asyncio.wait([stopping, cut], return_when=asyncio.FIRST_COMPLETED)
            if not stopping.done():
                log.warning("draining cut short by a second signal")
                await self._server.stop(0)  # a shorter grace ends the first stop sooner
                await stopping
        finally:
            cut.cancel()
        log.info("drained")

    async def stop(self, grace: float = 5) -> None:
        """Health says NOT_SERVING, calls in flight get ``grace`` seconds, then the server loop's resources close."""
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        if self._health_server is not None:
            await self._health_server.stop(0)
        if self._lifespan is not None:
            await self._lifespan.aclose()
            self._lifespan = None


def started(address: str, insecure: bool, mutual: bool) -> str:
    """The line a starting server prints."""
    note = (
        " — INSECURE DEV MODE: no TLS, no authentication, loopback only"
        if insecure
        else " with mutual TLS"
        if mutual
        else " with TLS (bearer tokens, no client certificates)"
    )
    return f"nats-mcp: serving MCP over gRPC at {address}{note} (started {time.strftime('%H:%M:%S')})"
