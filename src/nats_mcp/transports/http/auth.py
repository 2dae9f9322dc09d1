"""The HTTP authentication boundary: a request's bearer -> its identity (security/identity.py), or a 401 saying why.

:class:`RequestFacts` (the outermost middleware) notes the request's address and agent header in one per-request
:class:`Exchange`, since the SDK's bearer check hands :meth:`GatewayVerifier.verify_token` the token alone; it also
audits the refusals the SDK answers before any of our code sees the request. The verifier resolves the identity
once per request (:meth:`Resolver.resolve`: address filter, lockout, audit, the authenticator chain, the agent
binding) and enters it in the request's context, where the tool handlers read it. A refused credential's 401 says
what was wrong with it (:func:`refusal_description`, :class:`ExplainedAuth`), never any part of it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken
from pydantic import AnyHttpUrl
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nats_mcp.config.settings import Settings
from nats_mcp.security import identity
from nats_mcp.security.audit.event import AuditEvent, AuditRecorder
from nats_mcp.security.authn import Provider
from nats_mcp.security.authn.bearer import KEY_PREFIX, classify, credentials_for
from nats_mcp.security.errors import AuthenticationError, AuthFailure
from nats_mcp.security.guard import Guard
from nats_mcp.security.identity import Caller, Identity, Presence, Resolver
from nats_mcp.security.principal import Principal
from nats_mcp.transports.http.sessions import SessionAgents

AGENT_HEADER = "x-nats-mcp-agent"
"""Optional: the agent name a principal acts as (one principal may run several agents the policy allows)."""
NO_CREDENTIAL = "this request carries no verified credential"


@dataclass
class Exchange:
    """One HTTP request as the authentication sees it: set up by :class:`RequestFacts`, filled by the token check."""

    peer: str | None
    agent: str | None
    audited: bool = False
    """A refusal of this request was audited already (by the guard, or by :class:`RequestFacts`)."""
    refusal: str | None = None
    """Why this request's credential was refused (the 401's error_description), set by the token check."""
    anonymous: Identity | None = None
    """``--insecure-dev``: this request's identity, made on first use."""


_exchange: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar("nats_mcp_http_exchange", default=None)


def exchange() -> Exchange:
    """The request being served (an empty one outside :class:`RequestFacts`)."""
    found = _exchange.get()
    return found if found is not None else Exchange(None, None)


_REFUSALS: dict[int, tuple[str, str, str]] = {
    401: ("auth_failure", "unauthenticated", "missing_credentials"),
    403: ("denied", "forbidden", "http_forbidden"),  # insufficient scope, or an Origin not allowed
    413: ("limit_exceeded", "limit_exceeded", "body_too_large"),
    421: ("denied", "forbidden", "host_not_allowed"),
}

# What a 401 says, by the reason the security core gives (security/errors.py). Fixed texts: nothing of the
# credential is ever echoed, and none holds a '"' (they go in a quoted-string of WWW-Authenticate).
_KEY_REFUSALS: dict[str, str] = {
    "missing_credentials": "API keys are not accepted by this server",
    "malformed": f"malformed API key (expected {KEY_PREFIX}<id>_<secret>)",
    "bad_signature": "unknown API key (no key with this id and secret)",
    "revoked": "revoked API key",
    "expired": "expired API key",
}
_TOKEN_REFUSALS: dict[str, str] = {
    "missing_credentials": "no credentials: send Authorization: Bearer <token>",
    "malformed": f"malformed bearer token (neither an {KEY_PREFIX} API key nor a token this server can check)",
    "bad_signature": "the token's signature does not verify",
    "unknown_key": "the token is signed with a key its issuer does not publish",
    "bad_issuer": "the token's issuer is not trusted by this server",
    "bad_audience": "the token was not issued for this server (audience)",
    "algorithm_not_allowed": "the token's signing algorithm is not accepted",
    "expired": "expired token",
    "not_yet_valid": "the token is not valid yet",
    "inactive": "the token is not active (revoked or expired at its authorization server)",
}
_ANY_REFUSALS: dict[str, str] = {
    "unavailable": "the credential could not be checked right now (key store or issuer unreachable); retry",
    "locked_out": "too many failed attempts for this credential from this address; retry later",
    "address_denied": "this address may not connect",
}


def refusal_description(reason: AuthFailure, api_key: bool) -> str:
    """What the 401 says about a refused credential: its kind and what was wrong, never any part of it."""
    found = _ANY_REFUSALS.get(reason) or (_KEY_REFUSALS if api_key else _TOKEN_REFUSALS).get(reason)
    return found or ("invalid API key" if api_key else "invalid bearer token")


class RequestFacts:
    """ASGI middleware (outermost): remembers the client address and the agent header for the token check,
    which the SDK's authentication backend runs with the token alone; and audits the refusals the SDK answers
    before any of our code sees the request (no credentials, scope, Origin, Host, body size)."""

    def __init__(self, app: ASGIApp, audit: AuditRecorder | None = None) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = client[0] if client else None
        agent = None
        for name, value in scope.get("headers", ()):
            if name == AGENT_HEADER.encode():
                agent = value.decode("latin-1")[:100]
        facts = Exchange(peer, agent)
        _exchange.set(facts)
        audit = self.audit

        async def watch(message: Message) -> None:
            if audit is not None and message["type"] == "http.response.start" and not facts.audited:
                refusal = _REFUSALS.get(int(message["status"]))
                if refusal is not None:
                    facts.audited = True
                    kind, outcome, reason = refusal
                    audit.record(
                        AuditEvent(
                            kind,  # type: ignore[arg-type]
                            principal=None,
                            transport="http",
                            peer=peer,
                            outcome=outcome,
                            reason=reason,
                        ),
                    )
            await send(message)

        await self.app(scope, receive, watch)


class GatewayVerifier:
    """The SDK's ``TokenVerifier`` over the security core: None (401) for any refused credential."""

    def __init__(self, guard: Guard, provider: Provider, resource_url: str, settings: Settings) -> None:
        self.guard = guard
        self.provider = provider
        self.resource_url = resource_url
        self.resolver = Resolver.from_settings(guard, settings, "http")
        self.sessions = SessionAgents()
        """Which agents each MCP session acted as: its end marks them offline (transports/http/sessions.py)."""

    async def verify_token(self, token: str) -> AccessToken | None:
        facts = exchange()
        credentials = credentials_for(token, peer=facts.peer, agent=facts.agent)
        try:
            found = await self.resolver.resolve(self.provider, credentials)
        except AuthenticationError as exc:
            facts.audited = True
            facts.refusal = refusal_description(exc.reason, classify(token) == "api_key")
            return None  # the guard has audited it; the client gets 401 saying why, and the metadata URL
        identity.enter(found)  # this request's context: the tool handlers of this request read it
        principal = found.principal
        expires = principal.claims.get("exp")
        return AccessToken(
            token=token,
            client_id=principal.subject,
            scopes=sorted(principal.scopes),
            expires_at=int(expires) if isinstance(expires, int | float) else None,
            resource=self.resource_url,  # the provider has checked the audience against this server's URL
            subject=principal.subject,
            claims={"iss": principal.issuer},
        )

    def identity(self) -> Identity:
        """The identity of the request being handled (its token was verified by this object, for this request:
        its principal names this request's own agent header and address)."""
        return identity.current(NO_CREDENTIAL)

    def current(self) -> Principal:
        """The principal of the request being handled."""
        return self.identity().principal


class InsecureDev:
    """``--insecure-dev``: no authentication; every caller is a development principal, one agent per agent header."""

    def __init__(self, guard: Guard, settings: Settings) -> None:
        self.resolver = Resolver.from_settings(guard, settings, "http")

    def identity(self) -> Identity:
        facts = exchange()
        if facts.anonymous is None:
            facts.anonymous = self.resolver.anonymous(facts.peer, facts.agent)
        return facts.anonymous

    def current(self) -> Principal:
        return self.identity().principal


PrincipalSource = GatewayVerifier | InsecureDev


def gateway_caller(source: PrincipalSource, presence: Presence) -> Callable[[], Awaitable[Caller]]:
    """The domain caller of the current request: the agent its identity acts as (never chosen by arguments)."""
    sessions = source.sessions if isinstance(source, GatewayVerifier) else None

    def bound(found: Caller, presence: Presence) -> None:
        if sessions is not None:
            sessions.bind(found, presence.leave)

    return identity.acting_caller(source.identity, presence, bound)


class ExplainedAuth(RequireAuthMiddleware):
    """The SDK's bearer requirement, whose 401 says what was wrong with the credential (or that there was none)."""

    def __init__(self, app: Any, required_scopes: list[str], metadata_url: AnyHttpUrl, missing: str) -> None:
        super().__init__(app, required_scopes, metadata_url)
        self.missing = missing

    async def _send_auth_error(self, send: Send, status_code: int, error: str, description: str) -> None:
        if status_code == 401:
            description = exchange().refusal or self.missing
        await super()._send_auth_error(send, status_code, error, description)
