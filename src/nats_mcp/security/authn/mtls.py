"""The mTLS authentication boundary: a client certificate already verified by the TLS layer -> Principal.

The identity is, in order: the SPIFFE ID (a URI SAN ``spiffe://...``), the first other URI SAN, the first DNS SAN,
the subject common name. Each source has its own namespace, so a value from one can never equal a value from another
(a DNS SAN or CN spelling a victim's SPIFFE ID is not that victim): a SPIFFE ID is the subject as it is, with issuer
``mtls``; the others are prefixed ``uri:``, ``dns:``, ``cn:``, with issuers ``mtls-uri``, ``mtls-dns``, ``mtls-cn``.
Roles come from the policy (which maps principals to roles), never from the certificate.
Only a certificate the transport's TLS handshake verified may be handed in (``getpeercert()`` returns an empty dict
for an unverified one, which is refused here as missing).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

from nats_mcp.security.authn import Credentials
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.principal import Principal

log = logging.getLogger("nats_mcp.security.authn.mtls")

MTLS_ISSUER = "mtls"
MAX_IDENTITY = 1024
IdentitySource = Literal["spiffe", "uri", "dns", "cn"]
SOURCE_ISSUERS: dict[IdentitySource, str] = {
    "spiffe": MTLS_ISSUER,
    "uri": "mtls-uri",
    "dns": "mtls-dns",
    "cn": "mtls-cn",
}
"""The principal's issuer per identity source: only a URI SAN SPIFFE ID is issuer ``mtls``."""
SOURCE_PREFIXES: dict[IdentitySource, str] = {"spiffe": "", "uri": "uri:", "dns": "dns:", "cn": "cn:"}
"""The principal's subject prefix per source. A SPIFFE ID needs none (it starts ``spiffe://``, which no prefixed
subject does), so policy files naming SPIFFE IDs keep working."""


def principal_subject(identity: str, source: IdentitySource) -> str:
    """The principal subject of a certificate identity: qualified by its source."""
    return SOURCE_PREFIXES[source] + identity


def _sans(cert: Mapping[str, object], kind: str) -> list[str]:
    sans = cert.get("subjectAltName")
    if not isinstance(sans, tuple | list):
        return []
    return [
        v
        for item in sans
        if isinstance(item, tuple | list) and len(item) == 2 and item[0] == kind and isinstance(v := item[1], str) and v
    ]


def _common_name(cert: Mapping[str, object]) -> str | None:
    subject = cert.get("subject")
    if not isinstance(subject, tuple | list):
        return None
    for rdn in subject:
        if not isinstance(rdn, tuple | list):
            continue
        for attr in rdn:
            if isinstance(attr, tuple | list) and len(attr) == 2 and attr[0] == "commonName" and attr[1]:
                return str(attr[1])
    return None


def cert_identity(cert: Mapping[str, object]) -> tuple[str, IdentitySource] | None:
    """The identity of a ``getpeercert()`` dict and where it came from, or None if it names nothing usable."""
    uris = _sans(cert, "URI")
    found: tuple[str, IdentitySource] | None = None
    spiffe = [u for u in uris if u.lower().startswith("spiffe://")]
    if spiffe:
        found = (spiffe[0], "spiffe")
    elif uris:
        found = (uris[0], "uri")
    elif dns := _sans(cert, "DNS"):
        found = (dns[0], "dns")
    elif cn := _common_name(cert):
        found = (cn, "cn")
    if found is None:
        return None
    identity = found[0]
    if len(identity) > MAX_IDENTITY or any(ord(c) < 0x20 or ord(c) == 0x7F for c in identity):
        return None  # control characters or absurd lengths never become a principal (or a log line)
    return found


class MtlsAuthenticator:
    """Principals from verified client certificates."""

    async def authenticate(self, credentials: Credentials) -> Principal:
        cert = credentials.peer_cert
        if not cert:
            raise AuthenticationError("missing_credentials", "no verified client certificate")
        found = cert_identity(cert)
        if found is None:
            log.info("client certificate refused: no usable SAN or common name")
            raise AuthenticationError("malformed", "the client certificate names no usable identity")
        identity, source = found
        claims: dict[str, object] = {"cert_identity": identity, "identity_source": source}
        serial = cert.get("serialNumber")
        if isinstance(serial, str):
            claims["serial"] = serial
        return Principal(
            subject=principal_subject(identity, source),
            issuer=SOURCE_ISSUERS[source],
            method="mtls",
            cert_identity=identity,
            peer=credentials.peer,
            agent=credentials.agent,
            claims=claims,
        )


__all__ = ["MTLS_ISSUER", "SOURCE_ISSUERS", "MtlsAuthenticator", "cert_identity", "principal_subject"]
