"""The authentication boundary: what a transport hands over (credentials) and what each provider must return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nats_mcp.security.principal import Principal


@dataclass(frozen=True)
class Credentials:
    """What a caller presented, as the transport saw it. Never logged."""

    bearer: str | None = None
    """Authorization: Bearer value (a JWT or an opaque token)."""
    api_key: str | None = None
    """An API key (``nmk_<id>_<secret>``), from an X-API-Key header or a bearer value with that prefix."""
    peer_cert: dict[str, object] | None = None
    """The verified client certificate as ``ssl.SSLSocket.getpeercert()`` returns it (already checked by TLS)."""
    peer: str | None = None
    """Source IP address."""
    agent: str | None = None
    """Agent name the caller asks to act as."""


class Provider(Protocol):
    """One way to authenticate; raises :class:`~nats_mcp.security.errors.AuthenticationError` on refusal."""

    async def authenticate(self, credentials: Credentials) -> Principal: ...
