"""The streamable HTTP transport: an OAuth 2.1 resource server in front of the MCP server, for many agents at once.

Built on the SDK's low-level ``Server.streamable_http_app``: it answers both protocol revisions, checks
Host and Origin (DNS-rebinding protection), serves the RFC 9728 protected-resource metadata, and
answers 401 with a ``WWW-Authenticate`` that points at it and says what was wrong with the credential
(403 ``insufficient_scope`` with the scope needed). The metadata names authorization servers only when
there are real ones (configured, or the JWT issuers); with none (API keys, dev tokens) the endpoints an
OAuth client falls back to at the origin (``/register``, ``/token``, ``/authorize``) answer an OAuth
error saying this server takes API keys, not a 404. Tokens go through the security core
(``transports/http/auth.py``: :class:`GatewayVerifier` is the SDK's ``TokenVerifier`` seam over
:meth:`nats_mcp.security.identity.Resolver.resolve` — address filter, lockout, audit, the providers, the agent
binding — once per request). The transport only says who calls; each principal acts as its own agent, and
every call goes through the guard like on stdio.
All state lives in NATS, so any number of these processes serve the same agents interchangeably.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from mcp.server import Server
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext, RequireAuthMiddleware
from mcp.server.auth.routes import build_resource_metadata_url, cors_middleware
from mcp.server.auth.settings import AuthSettings
from mcp.server.streamable_http import GET_STREAM_KEY, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from nats_mcp.api.server import assist_of
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.sessions import SessionStore
from nats_mcp.config.settings import Settings
from nats_mcp.security.audit.event import AuditRecorder
from nats_mcp.security.principal import Principal
from nats_mcp.transports.http.auth import (
    AGENT_HEADER,
    ExplainedAuth,
    GatewayVerifier,
    InsecureDev,
    PrincipalSource,
    RequestFacts,
    gateway_caller,
    refusal_description,
)
from nats_mcp.transports.http.events import UNSTORED, NatsEventStore, SessionEventStore
from nats_mcp.transports.http.modern import ModernCalls, own_dispatch_default
from nats_mcp.transports.http.plain import plain
from nats_mcp.transports.http.protocol import Primer, ProtocolGate, SessionCap, SessionCounter
from nats_mcp.transports.http.roaming import RoamingSessions
from nats_mcp.transports.http.session_calls import SessionHot

log = logging.getLogger("nats_mcp.http")

__all__ = [  # the authentication side lives in transports/http/auth.py; these are what assembling a server names
    "AGENT_HEADER",
    "GatewayVerifier",
    "InsecureDev",
    "PrincipalSource",
    "build_http_app",
    "gateway_caller",
    "health_route",
    "refusal_description",
    "resource_url",
    "started",
    "transport_security",
]


class QuietServer(uvicorn.Server):
    """uvicorn's server without its signal handling: it re-raised SIGINT/SIGTERM after its graceful shutdown,
    which cancelled or killed the process before our own shutdown (key revocation, audit chain end) could run.
    The caller installs handlers that call :meth:`stop`."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self.listening.set()

    def stop(self) -> None:
        self.should_exit = True


def resource_url(settings: Settings, port: int) -> str:
    """The URL tokens must name: ``http.public_url``, else the bind address."""
    http = settings.http
    if http.public_url:
        return http.public_url.rstrip("/")
    scheme = "https" if http.tls else "http"
    host = f"[{http.host}]" if ":" in http.host else http.host
    return f"{scheme}://{host}:{port}{http.path}"


def transport_security(settings: Settings, port: int) -> TransportSecuritySettings:
    """Host and Origin checks on: the bind address (and loopback names for a loopback bind) plus settings."""
    http = settings.http
    hosts = [f"{http.host}:{port}", *http.allowed_hosts]
    if http.host in ("127.0.0.1", "localhost", "::1"):
        hosts += [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]
    origins = list(http.allowed_origins)
    for host in hosts:
        origins += [f"http://{host}", f"https://{host}"]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def authorization_servers(settings: Settings) -> list[str]:
    """The authorization servers clients may get tokens from: configured, else the trusted JWT issuers.

    API keys and dev tokens (``nats-mcp token issue``) come from no authorization server, and introspection's
    settings name its endpoint, not its issuer (``http.authorization_servers`` does): none is made up.
    """
    return list(settings.http.authorization_servers) or [i.issuer for i in settings.security.jwt_issuers]


def metadata_url(url: str) -> AnyHttpUrl:
    """Where the protected-resource metadata of resource ``url`` is (RFC 9728: the path after the well-known)."""
    return build_resource_metadata_url(AnyHttpUrl(url))


def resource_metadata_route(url: str, servers: list[str], scopes: list[str]) -> Route:
    """RFC 9728 protected-resource metadata; ``authorization_servers`` only when there are real ones (the field
    is optional: naming the MCP endpoint instead sent OAuth clients to discover metadata it does not have)."""
    document: dict[str, Any] = {"resource": url, "bearer_methods_supported": ["header"]}
    if servers:
        document["authorization_servers"] = servers
    if scopes:
        document["scopes_supported"] = scopes

    async def metadata(_request: Request) -> Response:
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})

    path = urlsplit(str(metadata_url(url))).path
    return Route(path, cors_middleware(metadata, ["GET", "OPTIONS"]), methods=["GET", "OPTIONS"])


NO_OAUTH_PATHS = ("/register", "/token", "/authorize")
"""Where an OAuth client looks for an authorization server at the resource's origin when the metadata names none
(the 2025-03-26 fallback; the TypeScript SDK registers at ``/register`` first)."""


def no_oauth_routes(url: str, takes: str) -> list[Route]:
    """An OAuth error on each fallback endpoint, which OAuth clients show; a 404 they report as a broken server.

    ``takes``: the credentials the server does accept, as the 401 says it.
    """
    body = {
        "error": "access_denied",
        "error_description": f"{url} does not use OAuth: it takes {takes} (Authorization: Bearer ...) and refused "
        "the one presented as missing, unknown, revoked or expired; configure a valid one (API keys: "
        "nats-mcp keys create)",
    }

    async def refuse(_request: Request) -> Response:
        return JSONResponse(body, status_code=400, headers={"Cache-Control": "no-store"})

    return [Route(path, refuse, methods=["GET", "POST"]) for path in NO_OAUTH_PATHS]


def build_http_app(
    server: Server[Any],
    settings: Settings,
    port: int,
    verifier: GatewayVerifier | None,
    audit: AuditRecorder | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    nats: tuple[NatsConnection, Layout] | None = None,
    own_dispatch: bool | None = None,
) -> Starlette:
    """The ASGI app: ``/mcp`` (authenticated unless ``verifier`` is None: insecure dev mode) and the metadata;
    ``extra_routes``: the dashboard's (it checks its own sessions: the SDK's bearer check guards ``/mcp`` only);
    ``nats``: the server's connection and namespace layout, whose NATS keeps the SSE events for ``Last-Event-ID``
    (none: no resumption); ``own_dispatch``: whether api/direct.py answers the hot 2026-07-28 requests
    (transports/http/modern.py) and those of the sessions kept in ``nats`` (transports/http/session_calls.py;
    None: as ``NATS_MCP_HTTP_OWN_DISPATCH`` says, on)."""
    http = settings.http
    url = resource_url(settings, port)
    if not settings.observe.tracing.enabled:
        # The SDK wraps every request in its OpenTelemetry span (no-op spans without a provider, still ~2 % of a
        # call's CPU); with tracing on, observe/tracing.py makes the call's span and the SDK's joins it.
        server.middleware = [m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)]
    auth = None
    if verifier is not None:
        auth = AuthSettings(
            issuer_url=AnyHttpUrl(url),  # used only for the SDK's metadata document, which _explain_refusals replaces
            resource_server_url=AnyHttpUrl(url),
            required_scopes=http.required_scopes or None,
            validate_token_resource=True,
        )
    events = None
    if nats is not None and http.sse_resume_s > 0:
        events = NatsEventStore(*nats, http.sse_resume_s)
    app = server.streamable_http_app(
        streamable_http_path=http.path,
        event_store=events,
        retry_interval=http.sse_retry_ms if events is not None else None,
        max_request_body_size=http.max_body_bytes,
        session_idle_timeout=http.session_idle_s,
        transport_security=transport_security(settings, port),
        host=http.host,
        auth=auth,
        token_verifier=verifier,
    )
    if auth is not None:
        _explain_refusals(app, settings, url)
    manager = server.session_manager
    _bind_events(manager, events)
    own = own_dispatch_default() if own_dispatch is None else own_dispatch
    roaming = None
    if nats is not None:  # sessions in NATS: any process serves any request of any session (transports/http/roaming.py)
        store = SessionStore(*nats, ttl_s=http.session_idle_s)
        roaming = RoamingSessions(store, manager, events, verifier.sessions if verifier is not None else None)
        roaming.install()
        if own:  # the sessions' hot requests answered by api/direct.py (transports/http/session_calls.py)
            roaming.hot = app.state.session_hot = SessionHot(server)
        assist = assist_of(server)
        if assist is not None:
            roaming.restore_level = assist.restore_level
            assist.level_sink = roaming.level_set
        _listen_while_running(app, roaming)
    # Per-principal session bounds only with authentication: in insecure dev mode every client is one principal.
    cap = None
    if verifier is not None:
        cap = SessionCap(http.max_sessions_per_principal, http.initialize_rate, _counter(manager, roaming), audit)
    prime = _primer(manager, http.sse_retry_ms) if events is not None else None
    modern = (lambda sdk: ModernCalls(sdk, server, manager)) if own else None
    _gate(app, http.path, cap, verifier.current if verifier is not None else None, http.max_body_bytes, prime, modern)
    app.router.routes.extend(extra_routes)  # e.g. /metrics (observe/exposition.py: its own address filter)
    app.add_middleware(RequestFacts, audit=audit)  # outermost: runs before the SDK's authentication
    return app


def _listen_while_running(app: Starlette, roaming: RoamingSessions) -> None:
    """Hear the other processes' session announcements for as long as the app runs (inside the SDK's lifespan)."""
    running = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(instance: Any) -> AsyncIterator[Any]:
        async with running(instance) as state:
            await roaming.start()
            try:
                yield state
            finally:
                await roaming.stop()

    app.router.lifespan_context = lifespan


def _counter(manager: StreamableHTTPSessionManager, roaming: RoamingSessions | None) -> SessionCounter:
    """How many sessions a principal holds: its records in NATS (every process), else this process's table."""

    async def count(owner: str, principal_sessions: set[str]) -> int:
        if roaming is not None:
            try:
                return len(await roaming.store.of_owner(owner))
            except Exception as exc:
                log.warning("sessions of a principal not counted in NATS (this process's only): %s", exc)
        live = manager._server_instances
        return sum(1 for s in principal_sessions if s in live)

    return count


def _explain_refusals(app: Starlette, settings: Settings, url: str) -> None:
    """Replace the SDK's bearer requirement (its 401 says only "Authentication required") and its metadata (which
    must name an authorization server) with ours; with no authorization server, answer the OAuth fallbacks."""
    http = settings.http
    servers = authorization_servers(settings)
    metadata = resource_metadata_route(url, servers, list(http.required_scopes))
    takes = "an API key or token" if servers or settings.security.dev_tokens else "an API key"
    missing = f"no credentials: send Authorization: Bearer with {takes}"
    routes = app.router.routes
    replaced = 0
    for i, route in enumerate(routes):
        if not isinstance(route, Route):
            continue
        if route.path == http.path and isinstance(route.endpoint, RequireAuthMiddleware):
            sdk = route.endpoint
            routes[i] = Route(
                http.path, endpoint=ExplainedAuth(sdk.app, sdk.required_scopes, metadata_url(url), missing)
            )
            replaced += 1
        elif route.path == metadata.path:
            routes[i] = metadata
            replaced += 1
    if replaced != 2:  # the SDK builds its app differently now: fail at start rather than serve its bare 401s
        raise RuntimeError(f"the SDK's app has no bearer-protected {http.path} route or no metadata route to replace")
    if not servers:
        routes.extend(no_oauth_routes(url, takes))


def _bind_events(manager: StreamableHTTPSessionManager, events: NatsEventStore | None) -> None:
    """Give each new session a store of its own events (the SDK gives every session the one store it was given, and
    a store that knows no session would replay any session's events to whoever names their id), and quick answers
    as plain JSON (transports/http/plain.py)."""
    admit = manager._admit_session

    def admitting(requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        transport = admit(requestor)
        if transport is not None and transport.mcp_session_id is not None:
            if events is not None:
                transport._event_store = events.bound(transport.mcp_session_id)
            plain(transport)
        return transport

    manager._admit_session = admitting  # type: ignore[method-assign]


def _primer(manager: StreamableHTTPSessionManager, retry_ms: int) -> Primer:
    """Priming events of standalone SSE streams, stored in the session's own event store."""

    async def prime(session: str) -> tuple[str, int] | None:
        transport = manager._server_instances.get(session)
        store = transport._event_store if transport is not None else None
        if not isinstance(store, SessionEventStore):
            return None
        event_id = await store.store_event(GET_STREAM_KEY, None)
        return (event_id, retry_ms) if event_id != UNSTORED else None

    return prime


def _gate(
    app: Starlette,
    path: str,
    cap: SessionCap | None,
    principal: Callable[[], Principal] | None,
    max_body: int,
    prime: Primer | None,
    modern: Callable[[ASGIApp], ASGIApp] | None = None,
) -> None:
    """Put the protocol gate (transports/http/protocol.py) between the bearer check and the SDK's session manager,
    and ``modern`` (the own 2026-07-28 hot path, transports/http/modern.py) between the gate and the manager."""
    for i, route in enumerate(app.router.routes):
        if not isinstance(route, Route) or route.path != path:
            continue
        endpoint = route.endpoint
        if isinstance(endpoint, RequireAuthMiddleware):
            inner = modern(endpoint.app) if modern is not None else endpoint.app
            endpoint.app = ProtocolGate(inner, max_body, cap, principal, prime)
        else:
            inner = modern(endpoint) if modern is not None else endpoint
            app.router.routes[i] = Route(path, endpoint=ProtocolGate(inner, max_body, cap, principal, prime))
        return
    raise RuntimeError(f"the SDK's app has no {path} route to guard")


def health_route(connected: Callable[[], bool]) -> BaseRoute:
    """``GET /healthz``: 200 while NATS is connected, else 503 — for load balancers and Kubernetes probes.

    Open to anyone (a probe has no credential) and says nothing but the two states.
    """

    async def healthz(_request: Request) -> Response:
        up = connected()
        body = {"status": "serving" if up else "not_serving", "nats": "connected" if up else "disconnected"}
        return JSONResponse(body, status_code=200 if up else 503, headers={"cache-control": "no-store"})

    return Route("/healthz", healthz, methods=["GET"])


def started(url: str, insecure: bool) -> str:
    """The line a starting server prints."""
    note = " — INSECURE DEV MODE: no authentication, loopback only" if insecure else ""
    return f"nats-mcp: serving MCP over streamable HTTP at {url}{note} (started {time.strftime('%H:%M:%S')})"
