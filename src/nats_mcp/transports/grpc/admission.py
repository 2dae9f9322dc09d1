"""The gRPC admission boundary: a call's metadata and TLS peer -> its identity (security/identity.py), or a status.

Every RPC starts here: the verified client certificate (its SPIFFE ID or SAN, from the TLS layer's ``auth_context``)
and/or an ``authorization: Bearer`` JWT or API key in the call metadata go to :meth:`Resolver.resolve` (address
filter, lockout, audit, the authenticator chain, the agent binding) once per call or stream; the identity is entered
in the call's context, where the tool handlers read it. A certificate-only call reuses the identity its connection's
certificate resolved to within the last :data:`KNOWN_FOR_S` seconds (:class:`KnownPeers`; bearer credentials are
resolved on every call, so revocation stays immediate). Refusals are :class:`CallRefused` statuses, each audited:
UNAUTHENTICATED with a ``www-authenticate`` trailer, PERMISSION_DENIED (TLS version, an agent the policy refuses).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from nats_mcp.config.settings import Settings
from nats_mcp.core.lru import LruTable
from nats_mcp.security import identity
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.authn import Credentials, Provider
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.guard import Guard
from nats_mcp.security.identity import Caller, Identity, Presence, Resolver
from nats_mcp.security.principal import Principal
from nats_mcp.transports.grpc.tls import first_value, peer_address, peer_cert

AGENT_KEY = "x-nats-mcp-agent"
"""Optional metadata: the agent name a principal acts as (one principal may run several agents the policy allows)."""
REALM = 'Bearer realm="nats-mcp"'
NO_CREDENTIAL = "this call carries no verified credential"
KNOWN_FOR_S = 60.0
"""How long a connection's certificate identity is reused (capped by the lockout window, see :class:`KnownPeers`)."""
KNOWN_PEERS = 4096


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


@dataclass
class Admission:
    """How calls are admitted: the guard and the authenticator (None: ``--insecure-dev``, no authentication).

    The provider may be set between :meth:`GrpcTransport.bind` and :meth:`GrpcTransport.serve` (dev tokens may
    name the bound address as audience, which is known only then); no call is admitted before ``serve``.
    """

    guard: Guard
    settings: Settings
    provider: Provider | None = None


def current_identity() -> Identity:
    """The identity of the call or stream being served (entered once it was admitted)."""
    return identity.current(NO_CREDENTIAL)


def current_principal() -> Principal:
    """The principal of the call or stream being served."""
    return current_identity().principal


def grpc_caller(presence: Presence) -> Callable[[], Awaitable[Caller]]:
    """The domain caller of the current call: the agent its identity acts as (never chosen by arguments)."""
    return identity.acting_caller(current_identity, presence)


class KnownPeers:
    """Identities resolved from a verified client certificate alone, per connection (peer address and port, the
    certificate's PEM, the agent asked for), each reused for at most ``ttl_s``.

    Resolving was a tenth of a cheap ``Call``'s server time and gives the same answer every time within that
    window: the certificate -> principal mapping and the agent binding are pure functions of the certificate, the
    agent and the (static) policy; the address filter is static; and the guard lets a credential that verified
    within the lockout window in even from a locked address, so a cached entry (``ttl_s`` <= that window, set
    before the resolution it records) never admits a call the full path would refuse. Refusals are not cached
    (each is audited and counted by the guard again), nor is anything with a bearer credential (API keys and
    tokens can be revoked or expire at any moment).
    """

    def __init__(self, ttl_s: float, max_entries: int = KNOWN_PEERS) -> None:
        self.ttl_s = ttl_s
        self._table: LruTable[tuple[str, bytes, str | None], tuple[Identity, float]] = LruTable(max_entries)

    def get(self, key: tuple[str, bytes, str | None]) -> Identity | None:
        hit = self._table.get(key)
        if hit is None:
            return None
        if hit[1] <= time.monotonic():
            self._table.pop(key)
            return None
        return hit[0]

    def put(self, key: tuple[str, bytes, str | None], found: Identity, since: float) -> None:
        """Remember ``found``, resolved by a resolution that started at ``since`` (monotonic)."""
        self._table.put(key, (found, since + self.ttl_s))


class Gatekeeper:
    """Admits calls: who calls (:meth:`admit`), and the audit record of a refusal made on this transport."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.guard = admission.guard
        self.grpc_settings = admission.settings.grpc
        self.namespace = admission.settings.resolved_namespace
        self.resolver = Resolver.from_settings(admission.guard, admission.settings, "grpc")
        self.known = KnownPeers(min(KNOWN_FOR_S, admission.guard.settings.lockout.window_s))

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

    async def admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        """Authenticate the call and check it may act at all; CallRefused (audited) otherwise."""
        metadata = call_metadata(context)
        connection = context.peer()
        peer = peer_address(connection)
        agent = metadata.get(AGENT_KEY)
        agent = agent[:100] if agent is not None else None
        auth = context.auth_context()
        provider = self.admission.provider
        if provider is None:  # --insecure-dev: loopback only, no authentication
            found = self.resolver.anonymous(peer, agent)
        else:
            version = (first_value(auth, "ssl_tls_version") or b"").decode("ascii", "replace")
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
            pem = first_value(auth, "x509_pem_cert")  # only present once the handshake verified it against the CA
            key = (connection, pem, agent) if pem and bearer is None else None
            known = self.known.get(key) if key is not None else None
            if known is not None:
                found = known
            else:
                since = time.monotonic()
                credentials = Credentials(
                    bearer=bearer, peer_cert=peer_cert(pem) if pem else None, peer=peer, agent=agent
                )
                try:
                    found = await self.resolver.resolve(provider, credentials)
                except AuthenticationError:  # audited by the guard; the client gets a generic answer
                    challenge = f'{REALM}, error="invalid_token"' if bearer else REALM
                    raise CallRefused(grpc.StatusCode.UNAUTHENTICATED, "authentication failed", challenge) from None
                if key is not None and found.caller is not None:
                    self.known.put(key, found, since)
        if found.caller is None:
            self.audit("denied", found.principal, peer, "forbidden", "agent_denied")
            raise CallRefused(grpc.StatusCode.PERMISSION_DENIED, found.refusal or "forbidden")
        return found
