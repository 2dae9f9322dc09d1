"""The principal boundary: who is calling, as every transport and authentication provider must describe it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

AuthMethod = Literal["local", "jwt", "introspection", "apikey", "mtls", "anonymous"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. Transports only produce these; the guard and the policy decide what they may do."""

    subject: str
    issuer: str
    method: AuthMethod
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    """Group or role claims of the token, mapped to roles by the policy."""
    namespaces: frozenset[str] | None = None
    """Namespaces the credential itself is limited to (None: no limit beyond the policy)."""
    peer: str | None = None
    """Source IP address (no port)."""
    cert_identity: str | None = None
    """SPIFFE ID, URI or DNS SAN of a verified client certificate."""
    agent: str | None = None
    """Agent name the caller asked to act as (gateway modes), checked against the policy."""
    key_id: str | None = None
    """API key id (never the secret)."""
    claims: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    """Non-secret claims kept for the policy (never the raw token)."""

    @property
    def key(self) -> str:
        """Stable identity of the principal across calls: issuer and subject."""
        return f"{self.issuer}\0{self.subject}"

    @property
    def display(self) -> str:
        return f"{self.subject} ({self.method} via {self.issuer})"


def agent_guid(principal: Principal, agent: str | None = None) -> str:
    """The agent GUID a gateway principal acts as: derived from issuer, subject and agent name, never chosen by
    the caller, so no principal can act as another principal's agent."""
    raw = f"{principal.issuer}\0{principal.subject}\0{agent or ''}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]
