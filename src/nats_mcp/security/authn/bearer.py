"""The credential-classification boundary: what kind of credential a presented string is, never whether it is valid.

The one place that tells an API key (``KEY_PREFIX``, :mod:`nats_mcp.security.authn.apikeys`) from a JWT (three
dot-separated parts) and an opaque token. The HTTP transport, the dashboard login, the authenticator chain and the
guard's metrics label all ask here; which provider then checks the credential is the chain's decision.
"""

from __future__ import annotations

from typing import Literal

from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.apikeys import KEY_PREFIX

BearerKind = Literal["none", "api_key", "jwt", "opaque"]
CredentialKind = Literal["none", "api_key", "jwt", "bearer", "mtls"]
"""A bounded label of the credential a request presented (metrics, audit ``method``): never any of its content."""


def classify(value: str | None) -> BearerKind:
    """What ``value`` (an ``Authorization: Bearer`` value or a pasted credential) looks like.

    ``api_key`` for anything with the key prefix, even malformed (the key store refuses it as ``malformed``, and an
    API key must never reach a token verifier); ``jwt`` for the compact JWS shape (three dot-separated parts); any
    other non-empty value is ``opaque`` (for introspection); an empty or missing one is ``none``.
    """
    if not value:
        return "none"
    if value.startswith(KEY_PREFIX):
        return "api_key"
    if value.count(".") == 2:
        return "jwt"
    return "opaque"


def credentials_for(value: str, *, peer: str | None = None, agent: str | None = None) -> Credentials:
    """The credentials of one presented string: an API key goes in ``api_key``, anything else in ``bearer``."""
    if classify(value) == "api_key":
        return Credentials(api_key=value, peer=peer, agent=agent)
    return Credentials(bearer=value, peer=peer, agent=agent)


def credential_kind(credentials: Credentials) -> CredentialKind:
    """What kind of credential was presented (a bounded label for metrics and audit; never any of its content)."""
    if credentials.api_key:
        return "api_key"
    kind = classify(credentials.bearer)
    if kind == "api_key":  # an API key may come as a bearer
        return "api_key"
    if kind == "jwt":
        return "jwt"
    if kind == "opaque":
        return "bearer"
    return "mtls" if credentials.peer_cert else "none"


__all__ = ["KEY_PREFIX", "BearerKind", "CredentialKind", "classify", "credential_kind", "credentials_for"]
