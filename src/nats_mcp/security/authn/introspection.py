"""The token-introspection boundary: opaque bearer tokens checked with the authorization server (RFC 7662) -> Principal.

The token is POSTed (form body, never a query string) to ``security.introspection.url`` with HTTP Basic client
credentials. ``active: false`` is refused as ``inactive``; ``exp``/``nbf`` are checked here too, and ``aud`` always:
it must name ``security.introspection.audience`` or, when that is not set, this server's own resource URL (as for
JWTs: a token issued for another API is never accepted here; a missing ``aud`` fails closed).

Principals live in their own namespace, so no answer can make one equal a principal of another provider or another
subject kind: the issuer is ``introspection:`` plus the answer's ``iss`` (else the endpoint URL), never ``apikey``
or a JWT issuer; a ``sub`` is the subject as it is, a token naming only a ``username`` has subject
``username:<name>`` and a client-credentials token (only ``client_id``) ``client:<id>``; a ``sub`` that itself starts
with one of those prefixes is refused (it could not be told apart). Active answers are cached for
``min(cache_s, exp - now)`` in a bounded cache (oldest entries go first) keyed by the token's SHA-256, so the raw
token is never kept; refusals are not cached. The token never appears in an error or a log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from nats_mcp.config.security import IntrospectionSettings
from nats_mcp.config.settings import Settings
from nats_mcp.core.pins import client_context, pin_error
from nats_mcp.core.redact import redact
from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.jwt import MAX_TOKEN_BYTES, secure_url
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.principal import Principal

log = logging.getLogger("nats_mcp.security.authn.introspection")

MAX_RESPONSE_BYTES = 64 * 1024
_SAFE_CLAIMS = ("sub", "iss", "aud", "exp", "client_id", "username")
ISSUER_PREFIX = "introspection:"
SUBJECT_KINDS = (("sub", ""), ("username", "username:"), ("client_id", "client:"))
"""Where a subject comes from, in order, and the prefix that keeps each kind in its own namespace."""


@dataclass(frozen=True)
class _Entry:
    until: float
    claims: Mapping[str, Any]


def _words(value: object) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(w for w in value.split() if w)
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str) and v)
    return frozenset()


def _subject(claims: Mapping[str, Any]) -> str | None:
    """Who the token is for, qualified by kind: ``sub``, else ``username:<username>``, else ``client:<client_id>``
    (a client-credentials token); None when none is usable, or a ``sub`` wears another kind's prefix."""
    for name, prefix in SUBJECT_KINDS:
        value = claims.get(name)
        if isinstance(value, str) and 0 < len(value) <= 256:
            if name == "sub" and value.startswith(tuple(p for _, p in SUBJECT_KINDS if p)):
                return None
            return prefix + value
    return None


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationError("malformed", f"introspection {name} is not a number")
    return float(value)


class Introspector:
    """RFC 7662 introspection client with a short, bounded cache of active answers."""

    def __init__(
        self,
        cfg: IntrospectionSettings,
        *,
        resource_urls: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        client: httpx2.AsyncClient | None = None,
    ) -> None:
        if not cfg.url:
            raise ValueError("security.introspection.url is not set")
        self.url = secure_url(cfg.url, "security.introspection.url")
        # Pins are checked in every handshake, before the token or the client secret is written (core/pins.py).
        self.tls = client_context(cfg.ca_file, cfg.pins, "security.introspection.pins", self.url)
        if self.tls is not None and client is not None:
            raise ValueError("security.introspection: pins and ca_file apply to the introspector's own HTTP client")
        self.audiences = frozenset([cfg.audience] if cfg.audience is not None else resource_urls)
        """What ``aud`` must name: the configured audience, else this server's resource URL(s)."""
        if not self.audiences:
            raise ValueError("security.introspection.audience is not set and this server's resource URL is unknown")
        self.cfg = cfg
        self.clock = clock
        self._client = client
        self._own_client = client is None
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        self.requests = 0
        """Introspection requests sent so far (for tests and metrics)."""

    @classmethod
    def from_settings(
        cls, settings: Settings, *, resource_urls: Iterable[str] = (), client: httpx2.AsyncClient | None = None
    ) -> Introspector | None:
        """The introspector of ``security.introspection``, or None when no URL is configured. ``resource_urls``
        (the transport's own URL) is the audience tokens must name unless ``security.introspection.audience`` is set."""
        cfg = settings.security.introspection
        return cls(cfg, resource_urls=resource_urls, client=client) if cfg.url else None

    @property
    def cached(self) -> int:
        return len(self._cache)

    async def authenticate(self, credentials: Credentials) -> Principal:
        if not credentials.bearer:
            raise AuthenticationError("missing_credentials", "no bearer token")
        return await self.verify(credentials.bearer, agent=credentials.agent, peer=credentials.peer)

    async def verify(self, token: str, *, agent: str | None = None, peer: str | None = None) -> Principal:
        """The principal an active token belongs to; AuthenticationError with a reason code otherwise."""
        try:
            claims = await self._claims(token)
        except AuthenticationError as exc:
            log.info("introspected token refused: %s%s", exc.reason, f" ({exc.detail})" if exc.detail else "")
            raise
        iss = claims.get("iss")
        # The answer's iss only qualifies the namespace: it can never make the principal an API key ("apikey"),
        # a certificate ("mtls") or a JWT issuer's user.
        return Principal(
            subject=_subject(claims) or "",
            issuer=ISSUER_PREFIX + (iss if isinstance(iss, str) and iss and len(iss) <= 512 else self.url),
            method="introspection",
            scopes=_words(claims.get("scope")),
            groups=_words(claims.get("roles")) | _words(claims.get("groups")),
            peer=peer,
            agent=agent,
            claims={k: claims[k] for k in _SAFE_CLAIMS if k in claims},
        )

    async def _claims(self, token: str) -> Mapping[str, Any]:
        if not token or len(token) > MAX_TOKEN_BYTES:
            raise AuthenticationError("malformed", "empty or oversize token")
        digest = hashlib.sha256(token.encode()).digest()
        now = self.clock()
        entry = self._cache.get(digest)
        if entry is not None:
            if entry.until > now:
                return entry.claims
            del self._cache[digest]
        claims = self._check(await self._introspect(token), now)
        exp = _number(claims, "exp")
        until = now + self.cfg.cache_s if exp is None else min(now + self.cfg.cache_s, exp)
        if until > now:
            self._remember(digest, _Entry(until, claims))
        return claims

    def _remember(self, digest: bytes, entry: _Entry) -> None:
        self._cache.pop(digest, None)
        while len(self._cache) >= self.cfg.cache_max:
            self._cache.popitem(last=False)  # the oldest goes first
        self._cache[digest] = entry

    def forget(self) -> None:
        """Drop every cached answer (e.g. after a credential incident)."""
        self._cache.clear()

    def _check(self, claims: Mapping[str, Any], now: float) -> Mapping[str, Any]:
        if claims.get("active") is not True:
            raise AuthenticationError("inactive", "the authorization server says the token is not active")
        sub = _subject(claims)
        if sub is None:
            raise AuthenticationError("malformed", "no usable sub, username or client_id (or a sub with a kind prefix)")
        exp = _number(claims, "exp")
        if exp is not None and exp <= now:
            raise AuthenticationError("expired", subject=sub)
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf > now:
            raise AuthenticationError("not_yet_valid", subject=sub)
        if not self.audiences & _words(claims.get("aud")):  # no token passthrough: it must be for this server
            raise AuthenticationError("bad_audience", "token not issued for this server", subject=sub)
        return claims

    async def _introspect(self, token: str) -> Mapping[str, Any]:
        if self._client is None:
            self._client = httpx2.AsyncClient(
                timeout=self.cfg.timeout_s, follow_redirects=False, verify=self.tls or True
            )
        auth = None
        if self.cfg.client_id is not None:
            secret = self.cfg.client_secret.get_secret_value() if self.cfg.client_secret is not None else ""
            auth = httpx2.BasicAuth(self.cfg.client_id, secret)
        self.requests += 1
        try:
            async with self._client.stream(
                "POST",
                self.url,
                data={"token": token, "token_type_hint": "access_token"},
                headers={"Accept": "application/json"},
                auth=auth,
                timeout=self.cfg.timeout_s,
            ) as resp:
                body = b""
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise AuthenticationError("unavailable", "introspection response too large")
                status = resp.status_code
        except httpx2.HTTPError as exc:
            pinned = pin_error(exc)  # its message names the setting and the keys seen, never the token
            why = str(pinned) if pinned is not None else redact(type(exc).__name__, [token])
            log.warning("introspection at %s failed: %s", redact(self.url), why)
            raise AuthenticationError("unavailable", "introspection endpoint unreachable") from None
        if status != 200:
            log.warning("introspection at %s answered HTTP %d", redact(self.url), status)
            raise AuthenticationError("unavailable", f"introspection endpoint answered HTTP {status}")
        try:
            claims = json.loads(body)
        except ValueError:
            raise AuthenticationError("unavailable", "introspection answer is not JSON") from None
        if not isinstance(claims, dict):
            raise AuthenticationError("unavailable", "introspection answer is not a JSON object")
        return claims

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None


__all__ = ["ISSUER_PREFIX", "Introspector"]
