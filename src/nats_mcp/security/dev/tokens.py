"""The development-token boundary: the local dev signing key, its issuer, and the dev JWTs it signs.

``nats-mcp token issue`` signs short-lived Ed25519 (EdDSA) JWTs with a key generated once into the embedded data
directory (mode 0600). They carry ``iss = urn:nats-mcp:dev`` and ``"dev": true`` and are trusted only by a server
whose settings say ``security.dev_tokens: true``. Audience: ``urn:nats-mcp:local`` by default; a server accepts that
one and the audiences of its configured issuers (its own resource URL), never anyone else's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nats_mcp.config.settings import Settings

DEV_ISSUER = "urn:nats-mcp:dev"
DEV_AUDIENCE = "urn:nats-mcp:local"
DEV_ALGORITHM = "EdDSA"
KEY_FILE_NAME = "dev-jwt-key.pem"
MAX_TTL_S = 30 * 86_400
"""A dev token lives at most 30 days: long-lived bearer tokens are what production keys are for."""


class DevKeyError(Exception):
    """The dev signing key cannot be read or written."""


@dataclass(frozen=True)
class DevKey:
    """The dev signing key pair and its key id (a thumbprint of the public key)."""

    private_key: Ed25519PrivateKey
    path: Path

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def kid(self) -> str:
        raw = self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "dev-" + hashlib.sha256(raw).hexdigest()[:16]


def key_path(settings: Settings) -> Path:
    """Where the dev signing key lives: ``<embedded data dir>/dev-jwt-key.pem``."""
    return settings.embedded.resolved_data_dir / KEY_FILE_NAME


def _read_key(path: Path) -> DevKey:
    try:
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise DevKeyError(f"cannot read the dev signing key {path}: {type(exc).__name__}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise DevKeyError(f"the dev signing key {path} is not an Ed25519 key; delete it to make a new one")
    return DevKey(key, path)


def load_or_create_key(path: Path) -> DevKey:
    """The dev key at ``path``, generated first if missing. Safe when several processes race: the key is written to
    a private temporary file and linked into place, so a reader never sees half a key and the first writer wins."""
    if path.exists():
        return _read_key(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # atomic, and fails if another process got there first
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise DevKeyError(f"cannot create the dev signing key {path}: {exc.strerror or exc}") from None
    return _read_key(path)


def issue(
    key: DevKey,
    subject: str,
    *,
    roles: Iterable[str] = (),
    namespaces: Iterable[str] = (),
    ttl_s: float = 3600.0,
    audience: str = DEV_AUDIENCE,
    now: float | None = None,
) -> str:
    """A signed dev JWT for ``subject`` (roles in the ``roles`` claim, optional ``namespaces`` claim)."""
    if not subject or len(subject) > 256:
        raise ValueError("the subject must be 1-256 characters")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"the lifetime must be more than 0 and at most {MAX_TTL_S // 86_400} days")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": DEV_ISSUER,
        "sub": subject,
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl_s),
        "jti": secrets.token_hex(8),
        "dev": True,
        "roles": sorted(set(roles)),
    }
    ns = sorted(set(namespaces))
    if ns:
        claims["namespaces"] = ns
    return jwt.encode(claims, key.private_key, algorithm=DEV_ALGORITHM, headers={"kid": key.kid, "typ": "JWT"})


def accepted_audiences(settings: Settings, extra: Iterable[str] = ()) -> frozenset[str]:
    """Audiences a dev token may name on this server: the local default, the configured issuers' audiences (this
    server's resource URL) and any ``extra`` the transport adds (its own URL)."""
    return frozenset({DEV_AUDIENCE, *(i.audience for i in settings.security.jwt_issuers), *extra})
