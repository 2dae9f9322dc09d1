"""The request-identity boundary: a request's credentials -> who calls and as which agent, resolved once per request.

Every network transport (HTTP, gRPC) and the dashboard login hand what the caller presented to
:meth:`Resolver.resolve`: the guard's address filter and lockout (audited) around the authenticator chain
(:mod:`nats_mcp.security.authn.chain`), then the agent binding (:func:`nats_mcp.security.binding.caller_for`). The
result is one frozen :class:`Identity` — principal, the agent it acts as (or why it may not), transport, credential
kind — that the transport carries with the request in one context variable (:func:`enter`, :func:`current`); tool
handlers read it, never the credential. Stdio's principal is the local user's (:func:`local_principal`).
Transports take what they need of the domain (the :class:`Caller` type, the ``forbidden`` refusal) from here.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from nats_mcp.config.security import SecuritySettings
from nats_mcp.config.settings import Settings
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import Forbidden, NotRegistered
from nats_mcp.security.authn import Credentials, Provider
from nats_mcp.security.authn.bearer import CredentialKind, credential_kind
from nats_mcp.security.binding import caller_for
from nats_mcp.security.guard import Guard, Refused
from nats_mcp.security.principal import Principal

CallerProvider = Callable[[], Awaitable[Caller]]


@dataclass(frozen=True)
class Identity:
    """Who one request is: resolved once (:meth:`Resolver.resolve`), then only read."""

    principal: Principal
    transport: str
    credential: CredentialKind
    caller: Caller | None
    """The agent the principal acts as; None when the policy refuses it that agent or namespace (``refusal``)."""
    refusal: str | None = None

    @property
    def peer(self) -> str | None:
        return self.principal.peer

    def acting(self) -> Caller:
        """The agent this request acts as; ``forbidden`` (a tool error) when the policy refuses it."""
        if self.caller is None:
            raise Forbidden(self.refusal or "this principal may not act as an agent here")
        return self.caller


class Presence(Protocol):
    """What marks an agent as seen (every call) and as gone (its session ended): the registry's gateway presence."""

    def __call__(self, caller: Caller) -> None: ...

    async def leave(self, caller: Caller) -> None: ...


class Resolver:
    """Credentials -> :class:`Identity` for one transport, in one namespace (see the module docstring)."""

    def __init__(self, guard: Guard, namespace: str, project_id: str, transport: str) -> None:
        self.guard = guard
        self.namespace = namespace
        self.project_id = project_id
        self.transport = transport

    @classmethod
    def from_settings(cls, guard: Guard, settings: Settings, transport: str) -> Resolver:
        return cls(guard, settings.resolved_namespace, settings.resolved_project_id, transport)

    async def resolve(self, provider: Provider, credentials: Credentials) -> Identity:
        """Authenticate ``credentials`` (address filter, lockout, audit: :meth:`Guard.authenticate`) and bind the agent.

        Raises :class:`~nats_mcp.security.errors.AuthenticationError` (already audited) on refusal.
        """
        principal = await self.guard.authenticate(provider, credentials, self.transport)
        return self.bind(principal, credential_kind(credentials))

    def anonymous(self, peer: str | None, agent: str | None) -> Identity:
        """``--insecure-dev``: no authentication; a development principal, one agent per agent name."""
        principal = Principal(
            subject="insecure-dev",
            issuer="insecure-dev",
            method="anonymous",
            roles=frozenset({"agent"}),
            agent=agent,
            peer=peer,
        )
        return self.bind(principal, "none")

    def bind(self, principal: Principal, credential: CredentialKind) -> Identity:
        """The identity of an authenticated ``principal``: the agent it acts as, or why the policy refuses it one."""
        try:
            caller = caller_for(principal, self.guard.policy, self.namespace, self.project_id)
        except Refused as refused:
            return Identity(principal, self.transport, credential, None, refused.message)
        return Identity(principal, self.transport, credential, caller)


def local_principal(settings: SecuritySettings) -> Principal:
    """Stdio's principal: the user who started the process, with the configured local roles."""
    return Principal(
        subject=settings.local.subject, issuer="local", method="local", roles=frozenset(settings.local.roles)
    )


_current: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("nats_mcp_identity", default=None)
"""The identity of the request the running task serves (the SDK carries it into the tool handlers' context)."""


def enter(identity: Identity) -> None:
    """The running task (and what it hands messages to) now serves a request of ``identity``."""
    _current.set(identity)


def current(missing: str = "this request carries no verified credential") -> Identity:
    """The identity of the request being served; ``not_registered`` (``missing``) outside an admitted request."""
    identity = _current.get()
    if identity is None:
        raise NotRegistered(missing)
    return identity


def acting_caller(
    identity: Callable[[], Identity], presence: Presence, bound: Callable[[Caller, Presence], None] | None = None
) -> CallerProvider:
    """The domain caller of the current request: the agent its identity acts as (never chosen by arguments), marked
    as seen; ``bound`` also learns it (the HTTP session it acted in)."""

    async def caller() -> Caller:
        found = identity().acting()
        presence(found)
        if bound is not None:
            bound(found, presence)
        return found

    return caller


__all__ = [
    "Caller",
    "CallerProvider",
    "Identity",
    "Presence",
    "Resolver",
    "acting_caller",
    "current",
    "enter",
    "local_principal",
]
