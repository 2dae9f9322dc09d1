"""The gRPC transport boundary (server side): MCP JSON-RPC messages tunnelled over gRPC, mutual TLS by default.

The contract is ``proto/nats_mcp/v1/transport.proto``: every frame is one complete JSON-RPC message, byte for
byte (the MCP spec's rule for custom transports). ``Session`` is a bidirectional stream served exactly like
stdio — one SDK server loop per stream, both protocol revisions (2025-11-25 handshake, 2026-07-28 envelope);
``Call`` carries one request and streams its notifications, then exactly one response; ``Listen`` carries one
``subscriptions/listen`` request and streams its change notifications until the client cancels.

Like the HTTP transport this one only says who calls: the verified client certificate (its SPIFFE ID or SAN,
read from the TLS layer's ``auth_context``) and/or an ``authorization: Bearer`` JWT or API key in the call
metadata go through :meth:`Guard.authenticate` (address filter, lockout, audit); each principal acts as its
own agent (:func:`nats_mcp.security.binding.caller_for`) and every tool call goes through the guard. Refusals
are gRPC statuses (UNAUTHENTICATED with a ``www-authenticate`` trailer, PERMISSION_DENIED, RESOURCE_EXHAUSTED
with a ``retry-after`` trailer for rate limits, INVALID_ARGUMENT), each audited. On a ``Session`` stream a
refusal of one request (policy, rate) is that request's error, so the other requests of the session carry on.
Handshake refusals (no client certificate, an unknown CA, an expired certificate) happen inside the gRPC core
before any call exists: the client sees UNAVAILABLE and no audit record can be written from Python.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

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
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import Forbidden, NotRegistered
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.authn import Credentials, Provider
from nats_mcp.security.binding import caller_for
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.guard import CallContext, Guard, Refused
from nats_mcp.security.principal import Principal
from nats_mcp.transports.grpc.gen.transport_pb2 import Frame
from nats_mcp.transports.grpc.single import answer

log = logging.getLogger("nats_mcp.grpc")

SERVICE = "nats_mcp.v1.McpTransport"
AGENT_KEY = "x-nats-mcp-agent"
"""Optional metadata: the agent name a principal acts as (one principal may run several agents the policy allows)."""
PROTOCOL_KEY = "mcp-protocol-version"
METHOD_KEY = "mcp-method"
NAME_KEYS = ("mcp-name", "mcp-tool-name", "mcp-resource-uri")
"""``mcp-name`` and the aliases Google's Python transport uses."""
ENVELOPE_VERSION = "io.modelcontextprotocol/protocolVersion"
REALM = 'Bearer realm="nats-mcp"'
LISTEN = "subscriptions/listen"
_NAMED_PARAM = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "resources/subscribe": "uri",
    "resources/unsubscribe": "uri",
}

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("nats_mcp_grpc_principal", default=None)


class CallRefused(Exception):
    """A call ended with a gRPC status (already audited where it applies)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        www_authenticate: str | None = None,
        *,
        trailers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.trailers = ((("www-authenticate", www_authenticate),) if www_authenticate else ()) + trailers

    async def abort(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(self.code, self.message, self.trailers)


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


# ---- what the TLS layer says about the peer --------------------------------------------------------------------


def read_frame(data: bytes) -> Frame | None:
    """A ``Frame`` from the wire, or None for bytes that are not one: our handlers answer INVALID_ARGUMENT then,
    where grpc's own deserializer failure is an UNKNOWN or INTERNAL status carrying the exception's text."""
    try:
        return Frame.FromString(data)
    except DecodeError:
        return None


def peer_address(peer: str) -> str | None:
    """The IP address of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:%5B::1%5D:5``), None for others."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0] or None
    if kind == "ipv6":
        host = unquote(rest).rsplit(":", 1)[0]
        return host.strip("[]") or None
    return None


@functools.lru_cache(maxsize=1024)
def peer_cert(pem: bytes) -> dict[str, object]:
    """A verified client certificate (PEM from ``auth_context``) in ``ssl.getpeercert()`` shape for mTLS authn.

    Cached by the PEM (a pure function of it; every call of a connection carries the same one): parsing it was
    a tenth of a cheap ``Call``'s server time. Callers must not change the mapping.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pem)
    sans: list[tuple[str, str]] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += [("URI", v) for v in ext.get_values_for_type(x509.UniformResourceIdentifier)]
        sans += [("DNS", v) for v in ext.get_values_for_type(x509.DNSName)]
        sans += [("IP Address", str(v)) for v in ext.get_values_for_type(x509.IPAddress)]
    subject = tuple((("commonName", str(a.value)),) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    return {"subject": subject, "subjectAltName": tuple(sans), "serialNumber": format(cert.serial_number, "X")}


def _first(auth: Mapping[str, Any], key: str) -> bytes | None:
    values = auth.get(key)
    if not values:
        return None
    value = next(iter(values), None)
    return value if isinstance(value, bytes) else None


def first_refusal(group: BaseExceptionGroup[CallRefused]) -> CallRefused:
    for exc in group.exceptions:
        if isinstance(exc, CallRefused):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            return first_refusal(exc)
    raise group


def call_metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str) and key not in found:
            found[key] = value
    return found


# ---- credentials and rotation ------------------------------------------------------------------------------------


def check_key_pair(chain: bytes, key: bytes, ca: bytes | None) -> None:
    """ValueError unless ``chain`` starts with a certificate for ``key`` and ``ca`` holds certificates.

    The gRPC core takes any bytes and fails handshakes later; a rotation caught half-way (a new key, the old
    certificate) or a truncated file must instead keep the current configuration.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    leaf = x509.load_pem_x509_certificate(chain)
    private = serialization.load_pem_private_key(key, password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(serialization.Encoding.PEM, spki) != private.public_key().public_bytes(
        serialization.Encoding.PEM, spki
    ):
        raise ValueError("the certificate is not for this key (a rotation half done?)")
    if ca is not None and not x509.load_pem_x509_certificates(ca):
        raise ValueError("the client CA file holds no certificate")


class CertificateReloader:
    """Serves the certificate files' current content: a changed key pair or CA is used from the next handshake."""

    def __init__(self, settings: GrpcSettings) -> None:
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            raise ValueError("grpc.tls_cert_file and grpc.tls_key_file are needed for TLS")
        self.files: list[Path] = [settings.tls_cert_file, settings.tls_key_file]
        if settings.client_ca_file is not None:
            self.files.append(settings.client_ca_file)
        self.ca_file = settings.client_ca_file
        self._stamp = self._stamps()
        self.initial = self._load()

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        return tuple((int(s.st_mtime_ns), int(s.st_size)) for s in (os.stat(f) for f in self.files))

    def _load(self) -> grpc.ServerCertificateConfiguration:
        chain, key = self.files[0].read_bytes(), self.files[1].read_bytes()
        ca = self.ca_file.read_bytes() if self.ca_file is not None else None
        check_key_pair(chain, key, ca)
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by the gRPC core before each handshake: None keeps the current configuration."""
        try:
            stamp = self._stamps()
            if stamp == self._stamp:
                return None
            config = self._load()
        except (OSError, ValueError) as exc:  # half-written files during a rotation: keep serving the old ones
            log.warning("TLS certificate reload failed (keeping the current ones): %s", exc)
            return None
        self._stamp = stamp
        log.info("TLS certificates reloaded")
        return config


def server_credentials(settings: GrpcSettings) -> grpc.ServerCredentials:
    """TLS credentials (mutual unless ``require_client_cert`` is off), re-read when the files change."""
    if settings.require_client_cert and settings.client_ca_file is None:
        raise ValueError("grpc.require_client_cert needs grpc.client_ca_file (the CA client certificates chain to)")
    reloader = CertificateReloader(settings)
    return grpc.dynamic_ssl_server_credentials(
        reloader.initial,
        reloader,  # type: ignore[arg-type]  # the core accepts None for "unchanged"; the stub says otherwise
        require_client_authentication=settings.require_client_cert,
    )


def server_options(settings: GrpcSettings) -> list[tuple[str, Any]]:
    """Channel arguments: message size, streams per connection, keepalive enforcement, connection age."""
    ms = 1000
    options: list[tuple[str, Any]] = [
        # gRPC refuses larger messages itself (unaudited); up to twice the cap our check answers and audits.
        ("grpc.max_receive_message_length", 2 * settings.max_message_bytes + 1024),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * ms)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * ms)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", int(settings.min_client_ping_interval_s * ms)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.so_reuseport", 0),
    ]
    if settings.max_connection_age_s is not None:
        options.append(("grpc.max_connection_age_ms", int(settings.max_connection_age_s * ms)))
        options.append(("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_s * ms)))
    if settings.max_connection_idle_s is not None:
        options.append(("grpc.max_connection_idle_ms", int(settings.max_connection_idle_s * ms)))
    return options


def resource_url(settings: Settings, port: int) -> str:
    """The audience tokens may name besides ``urn:nats-mcp:local``: ``grpc.public_url``, else the bind address."""
    g = settings.grpc
    if g.public_url:
        return g.public_url.rstrip("/")
    host = f"[{g.host}]" if ":" in g.host else g.host
    return f"{'grpcs' if g.tls else 'grpc'}://{host}:{port}"


# ---- the service ---------------------------------------------------------------------------------------------------


@dataclass
class Admission:
    """How calls are admitted: the guard and the authenticator (None: ``--insecure-dev``, no authentication).

    The provider may be set between :meth:`GrpcTransport.bind` and :meth:`GrpcTransport.serve` (dev tokens may
    name the bound address as audience, which is known only then); no call is admitted before ``serve``.
    """

    guard: Guard
    settings: Settings
    provider: Provider | None = None


def current_principal() -> Principal:
    """The principal of the stream being served (set once the stream was admitted)."""
    principal = _principal.get()
    if principal is None:
        raise NotRegistered("this call carries no verified credential")
    return principal


def grpc_caller(guard: Guard, settings: Settings, touch: Callable[[Caller], None]) -> Callable[[], Awaitable[Caller]]:
    """The domain caller of the current stream: the agent its principal acts as (never chosen by arguments)."""
    namespace, project_id = settings.resolved_namespace, settings.resolved_project_id

    async def caller() -> Caller:
        try:
            found = caller_for(current_principal(), guard.policy, namespace, project_id)
        except Refused as refused:
            raise Forbidden(refused.message) from None
        touch(found)
        return found

    return caller


class McpGrpcService:
    """The ``McpTransport`` service over one SDK server (shared by every stream; state lives in NATS)."""

    def __init__(self, server: Server[Any], admission: Admission) -> None:
        self.server = server
        self.admission = admission
        self.guard = admission.guard
        self.grpc_settings = admission.settings.grpc
        self.namespace = admission.settings.resolved_namespace
        self.project_id = admission.settings.resolved_project_id
        self.init_options = server.create_initialization_options()
        self.lifespan_state: Any = None

    def audit(self, kind: Any, principal: Principal | None, peer: str | None, outcome: str, reason: str) -> None:
        self.guard.audit.record(
            AuditEvent(
                kind,
                principal=principal,
                transport="grpc",
                peer=peer,
                namespace=self.namespace,
                outcome=outcome,
                reason=reason,
            ),
        )

    async def admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        """Authenticate the call and check it may act at all; CallRefused (audited) otherwise."""
        metadata = call_metadata(context)
        peer = peer_address(context.peer())
        agent = metadata.get(AGENT_KEY)
        agent = agent[:100] if agent is not None else None
        auth = context.auth_context()
        provider = self.admission.provider
        if provider is None:  # --insecure-dev: loopback only, no authentication
            principal = Principal(
                subject="insecure-dev",
                issuer="insecure-dev",
                method="anonymous",
                roles=frozenset({"agent"}),
                agent=agent,
                peer=peer,
            )
        else:
            version = (_first(auth, "ssl_tls_version") or b"").decode("ascii", "replace")
            if self.grpc_settings.min_tls == "1.3" and version != "TLSv1.3":
                self.audit("denied", None, peer, "forbidden", "tls_version")
                raise CallRefused(
                    grpc.StatusCode.PERMISSION_DENIED, f"TLS 1.3 is required (this connection: {version})"
                )
            bearer = None
            authorization = metadata.get("authorization")
            if authorization is not None:
                scheme, _, value = authorization.partition(" ")
                if scheme.lower() != "bearer" or not value.strip():
                    self.audit("auth_failure", None, peer, "unauthenticated", "malformed")
                    raise CallRefused(
                        grpc.StatusCode.UNAUTHENTICATED,
                        "the authorization metadata must be 'Bearer <token>'",
                        f'{REALM}, error="invalid_request"',
                    )
                bearer = value.strip()
            pem = _first(auth, "x509_pem_cert")
            cert = peer_cert(pem) if pem else None  # only present once the handshake verified it against the CA
            credentials = Credentials(bearer=bearer, peer_cert=cert, peer=peer, agent=agent)
            try:
                principal = await self.guard.authenticate(provider, credentials, "grpc")
            except AuthenticationError:  # audited by the guard; the client gets a generic answer
                challenge = f'{REALM}, error="invalid_token"' if bearer else REALM
                raise CallRefused(grpc.StatusCode.UNAUTHENTICATED, "authentication failed", challenge) from None
        try:
            caller_for(principal, self.guard.policy, self.namespace, self.project_id)
        except Refused as refused:
            self.audit("denied", principal, peer, "forbidden", "agent_denied")
            raise CallRefused(grpc.StatusCode.PERMISSION_DENIED, refused.message) from None
        return principal

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
        self, principal: Principal
    ) -> AsyncIterator[tuple[ContextSendStream[SessionMessage | Exception], ContextReceiveStream[SessionMessage]]]:
        """One SDK server loop over a memory stream pair, acting as ``principal``; yields (to server, from server)."""
        _principal.set(principal)  # read by the tool handlers through current_principal(), in this task's context
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
            principal = await self.admit(context)
            metadata = call_metadata(context)
            # Admitted: say so at once. Clients wait for this before their first frame, since a write racing a
            # refusal makes grpc's Python client replace the refusal's status with INTERNAL.
            await context.send_initial_metadata(())
            async with self._loop(principal) as (to_server, from_server):

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
            principal = await self.admit(context)
            message = self.check_frame(principal, self.json_of(principal, request))
            if listen and getattr(message, "method", None) != LISTEN:
                self.audit("denied", principal, principal.peer, "invalid_argument", "not_listen")
                raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, f"Listen carries one {LISTEN} request")
            self.check_metadata(principal, call_metadata(context), message)
            await self.exchange(principal, message, lambda out: context.write(self._frame(out)))
        except* CallRefused as group:
            refusal = first_refusal(group)
        if refusal is not None:  # aborted here: raised inside except* the abort would reach gRPC wrapped in a group
            await refusal.abort(context)

    async def exchange(
        self, principal: Principal, message: types.JSONRPCMessage, emit: Callable[[SessionMessage], Awaitable[None]]
    ) -> None:
        """Run one checked request as ``principal``; ``emit`` gets its notifications, then its response.

        CallRefused (audited) when ``message`` is not a request, or when the guard refused it for its rate.
        """
        if not isinstance(message, types.JSONRPCRequest):
            self.audit("denied", principal, principal.peer, "invalid_argument", "not_a_request")
            raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "a call carries one JSON-RPC request")
        _principal.set(principal)  # read by the tool handlers through current_principal(), in this task's context
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
