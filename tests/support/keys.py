"""Signed API keys and dev keys as the HTTP and gRPC auth tests mint them."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import jwt

from nats_mcp.security.dev import tokens as devtoken


def dev_key(tmp_path: Path) -> devtoken.DevKey:
    """The dev signing key the serve processes of this test use (their XDG data dir, see isolated_env)."""
    return devtoken.load_or_create_key(tmp_path / "home" / ".local" / "share" / "nats-mcp" / devtoken.KEY_FILE_NAME)


def signed(
    tmp_path: Path,
    subject: str,
    audience: str,
    *,
    scope: str | None = None,
    issued: float | None = None,
    ttl_s: int = 3600,
    roles: tuple[str, ...] = (),
) -> str:
    """A dev JWT with claims `nats-mcp token issue` cannot make (a past issue time, an OAuth scope)."""
    key = dev_key(tmp_path)
    now = int(time.time() if issued is None else issued)
    claims: dict[str, Any] = {
        "iss": devtoken.DEV_ISSUER,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "jti": secrets.token_hex(8),
        "dev": True,
        "roles": list(roles),
    }
    if scope is not None:
        claims["scope"] = scope
    return jwt.encode(claims, key.private_key, algorithm=devtoken.DEV_ALGORITHM, headers={"kid": key.kid})
