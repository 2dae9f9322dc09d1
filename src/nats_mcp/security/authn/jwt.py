"""The JWT authentication boundary: bearer JWTs verified against configured issuers (JWKS or PEM keys) -> Principal.

Only keys from configured sources are used (never a ``jku``/``x5u``/``jwk`` header); each issuer's algorithms are
pinned in the settings and are asymmetric only, so ``none`` and HS/RS confusion are refused before any key is
touched; a key is used only with an algorithm its type fits. ``iss`` must match exactly, ``aud`` must name this
server, ``exp`` and ``sub`` are required, ``exp``/``nbf``/``iat`` are checked with the issuer's leeway. A JWKS is
cached; an unknown ``kid`` refetches it at most once per ``jwks_refresh_min_s`` (made-up kids cannot hammer the
IdP) and the number of keys held is bounded. The token never appears in an error or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx2
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from nats_mcp.config.security import JwtIssuerSettings
from nats_mcp.config.settings import Settings
from nats_mcp.core.pins import client_context
from nats_mcp.core.redact import redact
from nats_mcp.security.authn import Credentials
from nats_mcp.security.dev import tokens as devtoken
from nats_mcp.security.errors import AuthenticationError, AuthFailure
from nats_mcp.security.principal import Principal

log = logging.getLogger("nats_mcp.security.authn.jwt")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

MAX_TOKEN_BYTES = 16 * 1024
"""Longer bearer values are refused unparsed (no IdP issues access tokens this large)."""
MAX_JWKS_BYTES = 512 * 1024
MAX_JWKS_KEYS = 64
"""Keys kept from one JWKS document; the rest are ignored (an IdP publishes a handful)."""
JWKS_MAX_AGE_S = 900.0
"""A JWKS is refetched this long after it was loaded even without an unknown kid (keys get rotated out too)."""
MIN_RSA_BITS = 2048
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_SAFE_CLAIMS = ("sub", "iss", "aud", "exp", "client_id", "azp", "dev")


def secure_url(url: str, what: str) -> str:
    """``url`` if it is https, or http to a loopback host (tests, a local IdP); else ValueError. Credentials and the
    keys that decide who is who must not travel in clear."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK:
        return url
    raise ValueError(f"{what} must be an https:// URL (http:// only to localhost), got {redact(url)!r}")


def key_fits(algorithm: str, key: object) -> bool:
    """Whether ``key`` is the right kind of public key for ``algorithm`` (an RSA key never verifies an ES token)."""
    if algorithm.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS
    curves = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
    if algorithm in curves:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, curves[algorithm])
    if algorithm == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


def load_public_key_file(path: Path) -> PublicKey:
    """A PEM public key or certificate (its public key) from ``path``; ValueError naming the file otherwise."""
    try:
        data = path.expanduser().read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the JWT public key file {path}: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ValueError(f"{path} is not a PEM public key or certificate") from None
    if not isinstance(
        key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
    ):
        raise ValueError(f"{path} holds a key type JWTs are not verified with here")
    return key


class KeySource(Protocol):
    """Where an issuer's verification keys come from."""

    async def keys_for(self, kid: str | None, algorithm: str) -> list[Any]:
        """Keys that may verify a token with this ``kid`` and ``algorithm``; AuthenticationError when none can."""
        ...

    async def aclose(self) -> None: ...


class StaticKeys:
    """PEM public keys from files: every key that fits the algorithm is tried (there are only a few)."""

    def __init__(self, keys: Sequence[PublicKey]) -> None:
        self.keys = list(keys)

    async def keys_for(self, kid: str | None, algorithm: str) -> list[Any]:
        found = [k for k in self.keys if key_fits(algorithm, k)]
        if not found:
            raise AuthenticationError("unknown_key", f"no configured key fits {algorithm}")
        return found

    async def aclose(self) -> None:
        return None


@dataclass
class _Jwk:
    key: Any
    algorithm: str | None


class JwksCache:
    """One issuer's JWKS: loaded on first use, kept for :data:`JWKS_MAX_AGE_S`, refetched on an unknown ``kid`` at
    most once per ``refresh_min_s`` (one fetch at a time; a failed fetch keeps the keys already held)."""

    def __init__(
        self,
        url: str,
        *,
        refresh_min_s: float = 60.0,
        timeout_s: float = 5.0,
        max_age_s: float = JWKS_MAX_AGE_S,
        max_keys: int = MAX_JWKS_KEYS,
        clock: Callable[[], float] = time.monotonic,
        client: httpx2.AsyncClient | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = secure_url(url, "jwks_url")
        self.tls = tls  # with jwks_pins, checks them in every handshake, before the GET is written (core/pins.py)
        if tls is not None and client is not None:
            raise ValueError("jwks_pins and jwks_ca_file apply to the JWKS cache's own HTTP client")
        self.refresh_min_s = refresh_min_s
        self.timeout_s = timeout_s
        self.max_age_s = max_age_s
        self.max_keys = max_keys
        self.clock = clock
        self.client = client
        self._own_client = False
        self.fetches = 0
        """Fetch attempts so far (for tests and metrics)."""
        self._keys: dict[str, _Jwk] = {}
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def keys_for(self, kid: str | None, algorithm: str) -> list[Any]:
        now = self.clock()
        if self._loaded_at is None or now - self._loaded_at >= self.max_age_s:
            await self._refresh(self._retry_after())
        found = self._lookup(kid, algorithm)
        if not found and kid is not None and kid not in self._keys:
            await self._refresh(self.refresh_min_s)  # maybe a rotated-in key
            found = self._lookup(kid, algorithm)
        if found:
            return found
        if self._loaded_at is None:
            raise AuthenticationError("unavailable", "the issuer's JWKS could not be fetched")
        if kid is not None and kid in self._keys:
            raise AuthenticationError("algorithm_not_allowed", f"key {kid!r} is not for {algorithm}")
        raise AuthenticationError("unknown_key", "no key with this kid" if kid is not None else "no kid and no fit")

    def _retry_after(self) -> float:
        # Nothing loaded yet: retry sooner than refresh_min_s, but still paced.
        return self.refresh_min_s if self._loaded_at is not None else min(self.refresh_min_s, 5.0)

    def _lookup(self, kid: str | None, algorithm: str) -> list[Any]:
        held = self._keys.get(kid) if kid is not None else None
        candidates = list(self._keys.values()) if kid is None else [held] if held is not None else []
        return [c.key for c in candidates if c.algorithm in (None, algorithm) and key_fits(algorithm, c.key)]

    async def _refresh(self, min_interval: float) -> None:
        async with self._lock:
            now = self.clock()
            if self._attempted_at is not None and now - self._attempted_at < min_interval:
                return  # fetched recently (perhaps by a caller we waited for): use what we have
            self._attempted_at = now
            self.fetches += 1
            try:
                data = await self._fetch()
                keys = self._parse(data)
            except Exception as exc:
                log.warning("cannot fetch the JWKS at %s: %s", redact(self.url), redact(_describe(exc)))
                return
            self._keys = keys
            self._loaded_at = self.clock()
            log.info("loaded %d signing keys from %s", len(keys), redact(self.url))

    async def _fetch(self) -> bytes:
        if self.client is None:
            self.client = httpx2.AsyncClient(timeout=self.timeout_s, follow_redirects=False, verify=self.tls or True)
            self._own_client = True
        async with self.client.stream("GET", self.url, headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_JWKS_BYTES:
                    raise ValueError(f"the JWKS document is larger than {MAX_JWKS_BYTES} bytes")
                chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, data: bytes) -> dict[str, _Jwk]:
        doc = json.loads(data)
        entries = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise ValueError("not a JWKS document (no 'keys' list)")
        keys: dict[str, _Jwk] = {}
        for index, entry in enumerate(entries):
            if len(keys) >= self.max_keys:
                log.warning("the JWKS at %s has more than %d keys; ignoring the rest", redact(self.url), self.max_keys)
                break
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            if any(name in entry for name in ("d", "p", "q", "k")):
                continue  # private or symmetric material never belongs in a JWKS; refuse to use it
            try:
                parsed = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type we cannot use; others may still be fine
            alg = entry.get("alg")
            kid = entry.get("kid")
            keys[kid if isinstance(kid, str) and kid else f"#{index}"] = _Jwk(
                parsed.key, alg if isinstance(alg, str) else None
            )
        return keys

    async def aclose(self) -> None:
        if self._own_client and self.client is not None:
            await self.client.aclose()
            self.client = None


class DevKeySource:
    """The local dev signing key (read, or created, on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: Any = None

    async def keys_for(self, kid: str | None, algorithm: str) -> list[Any]:
        if self._key is None:
            try:
                self._key = (await asyncio.to_thread(devtoken.load_or_create_key, self.path)).public_key
            except devtoken.DevKeyError as exc:
                log.warning("dev tokens are on but %s", exc)
                raise AuthenticationError("unavailable", "the dev signing key cannot be read") from None
        if not key_fits(algorithm, self._key):
            raise AuthenticationError("algorithm_not_allowed", f"dev tokens are not {algorithm}")
        return [self._key]

    async def aclose(self) -> None:
        return None


@dataclass
class TrustedIssuer:
    """One issuer as the verifier uses it."""

    issuer: str
    audiences: frozenset[str]
    algorithms: tuple[str, ...]
    keys: list[KeySource]
    roles_claim: str = "roles"
    leeway_s: float = 30.0
    dev: bool = False

    @classmethod
    def from_settings(cls, cfg: JwtIssuerSettings, *, client: httpx2.AsyncClient | None = None) -> TrustedIssuer:
        """Build from settings; ValueError (naming the issuer) when it has no keys or a key file is unusable."""
        sources: list[KeySource] = []
        if cfg.public_key_files:
            sources.append(StaticKeys([load_public_key_file(p) for p in cfg.public_key_files]))
        if cfg.jwks_url:
            tls = client_context(cfg.jwks_ca_file, cfg.jwks_pins, "security.jwt_issuers[].jwks_pins", cfg.jwks_url)
            sources.append(JwksCache(cfg.jwks_url, refresh_min_s=cfg.jwks_refresh_min_s, client=client, tls=tls))
        if not sources:
            raise ValueError(f"JWT issuer {cfg.issuer!r} has neither jwks_url nor public_key_files")
        return cls(
            issuer=cfg.issuer,
            audiences=frozenset({cfg.audience}),
            algorithms=tuple(cfg.algorithms),
            keys=sources,
            roles_claim=cfg.roles_claim,
            leeway_s=cfg.leeway_s,
        )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _words(value: object) -> frozenset[str]:
    """A claim that is a space-separated string or a list of strings, as a set (anything else: empty)."""
    if isinstance(value, str):
        return frozenset(w for w in value.split() if w)
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str) and v)
    return frozenset()


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The claims a JWT carries, NOT verified: only for routing and lockout keys; None if it is not a JWT."""
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        return None
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` a JWT claims (not verified: only for routing to the right verifier), or None if not a JWT."""
    iss = (unverified_claims(token) or {}).get("iss")
    return iss if isinstance(iss, str) else None


_ERRORS: tuple[tuple[type[Exception], AuthFailure], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "bad_audience"),
    (jwt.InvalidIssuerError, "bad_issuer"),
    (jwt.InvalidIssuedAtError, "malformed"),
    (jwt.InvalidAlgorithmError, "algorithm_not_allowed"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidKeyError, "bad_signature"),
    (jwt.MissingRequiredClaimError, "malformed"),
    (jwt.exceptions.InvalidSubjectError, "malformed"),
    (jwt.PyJWTError, "malformed"),
)


class JwtVerifier:
    """Verifies bearer JWTs of the trusted issuers (and of the dev issuer when dev tokens are on)."""

    def __init__(self, issuers: Iterable[TrustedIssuer]) -> None:
        self.issuers: dict[str, TrustedIssuer] = {}
        for issuer in issuers:
            if issuer.issuer in self.issuers:
                raise ValueError(f"JWT issuer {issuer.issuer!r} is configured twice")
            self.issuers[issuer.issuer] = issuer

    @classmethod
    def from_settings(
        cls, settings: Settings, *, dev_audiences: Iterable[str] = (), client: httpx2.AsyncClient | None = None
    ) -> JwtVerifier:
        """The verifier for ``security.jwt_issuers`` (+ the dev issuer if ``security.dev_tokens``). A dev token must
        name ``urn:nats-mcp:local``, a configured issuer's audience, or one of ``dev_audiences`` (the transport's own
        resource URL)."""
        issuers = [TrustedIssuer.from_settings(cfg, client=client) for cfg in settings.security.jwt_issuers]
        if settings.security.dev_tokens:
            issuers.append(
                TrustedIssuer(
                    issuer=devtoken.DEV_ISSUER,
                    audiences=devtoken.accepted_audiences(settings, dev_audiences),
                    algorithms=(devtoken.DEV_ALGORITHM,),
                    keys=[DevKeySource(devtoken.key_path(settings))],
                    leeway_s=30.0,
                    dev=True,
                )
            )
        return cls(issuers)

    def trusts(self, issuer: str | None) -> bool:
        return issuer is not None and issuer in self.issuers

    async def authenticate(self, credentials: Credentials) -> Principal:
        if not credentials.bearer:
            raise AuthenticationError("missing_credentials", "no bearer token")
        return await self.verify(credentials.bearer, agent=credentials.agent, peer=credentials.peer)

    async def verify(self, token: str, *, agent: str | None = None, peer: str | None = None) -> Principal:
        """The principal a valid token names; AuthenticationError with a reason code otherwise."""
        try:
            claims = await self._verify(token)
        except AuthenticationError as exc:
            log.info("JWT refused: %s%s", exc.reason, f" ({exc.detail})" if exc.detail else "")
            raise
        return self._principal(claims, agent=agent, peer=peer)

    async def _verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthenticationError("malformed", "token too long")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthenticationError("malformed", "not a JWT") from None
        iss = unverified.get("iss")
        sub = unverified.get("sub")
        claimed = sub if isinstance(sub, str) and 0 < len(sub) <= 256 else None
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthenticationError("bad_issuer", "issuer not trusted", subject=claimed)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in issuer.algorithms:
            shown = alg if isinstance(alg, str) and len(alg) <= 16 else "?"
            raise AuthenticationError("algorithm_not_allowed", f"alg {shown!r}", subject=claimed)
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise AuthenticationError("malformed", "bad kid", subject=claimed)
        keys: list[Any] = []
        last: AuthenticationError | None = None
        for source in issuer.keys:
            try:
                keys += await source.keys_for(kid, alg)
            except AuthenticationError as exc:
                last = exc
        if not keys:
            raise last or AuthenticationError("unknown_key", subject=claimed)
        reason: AuthFailure = "bad_signature"
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=sorted(issuer.audiences),
                    issuer=issuer.issuer,
                    leeway=issuer.leeway_s,
                    options={"require": ["exp", "iss", "sub", "aud"], "enforce_minimum_key_length": True},
                )
            except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
                continue  # maybe the next key
            except jwt.PyJWTError as exc:
                reason = next(code for kind, code in _ERRORS if isinstance(exc, kind))
                raise AuthenticationError(reason, type(exc).__name__, subject=claimed) from None
            if issuer.dev and claims.get("dev") is not True:
                raise AuthenticationError("malformed", "dev issuer without the dev claim", subject=claimed)
            sub = claims.get("sub")
            if not isinstance(sub, str) or not 0 < len(sub) <= 256:
                raise AuthenticationError("malformed", "sub must be 1-256 characters", subject=None)
            namespaces = claims.get("namespaces")
            if namespaces is not None and not (
                isinstance(namespaces, list) and all(isinstance(n, str) and n for n in namespaces)
            ):
                # A limit we cannot read must not become "no limit".
                raise AuthenticationError("malformed", "namespaces must be a list of names", subject=sub)
            return claims
        raise AuthenticationError(reason, "signature does not verify", subject=claimed)

    def _principal(self, claims: Mapping[str, Any], *, agent: str | None, peer: str | None) -> Principal:
        issuer = self.issuers[claims["iss"]]
        scopes = _words(claims.get("scope")) or _words(claims.get("scp"))
        namespaces = frozenset(claims["namespaces"]) if claims.get("namespaces") is not None else None
        return Principal(
            subject=claims["sub"],
            issuer=claims["iss"],
            method="jwt",
            scopes=scopes,
            groups=_words(claims.get(issuer.roles_claim)),
            namespaces=namespaces,
            peer=peer,
            agent=agent,
            claims={k: claims[k] for k in _SAFE_CLAIMS if k in claims},
        )

    async def aclose(self) -> None:
        for issuer in self.issuers.values():
            for source in issuer.keys:
                await source.aclose()


__all__ = [
    "DevKeySource",
    "JwksCache",
    "JwtVerifier",
    "KeySource",
    "StaticKeys",
    "TrustedIssuer",
    "key_fits",
    "load_public_key_file",
    "secure_url",
    "unverified_issuer",
]
