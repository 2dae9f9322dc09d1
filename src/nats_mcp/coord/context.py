"""The caller boundary of the domain: who a call acts as, decided by the server and never by tool arguments."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nats_mcp.core.names import validate_guid, validate_name


@dataclass(frozen=True)
class Caller:
    """The agent a call acts as. Transports/principals produce it; coord only reads it."""

    guid: str
    namespace: str
    project_id: str
    owner: str
    """Opaque key of the authenticated user (for ``personal`` scope); a hash, never an OS user name."""
    hostname: str | None = None

    def __post_init__(self) -> None:
        validate_guid(self.guid)
        validate_name(self.namespace, "namespace")


def owner_key(subject: str, issuer: str = "local") -> str:
    """The ``personal``-scope key of an authenticated subject: stable, comparable, not reversible."""
    return hashlib.sha256(f"{issuer}\0{subject}".encode()).hexdigest()[:24]
