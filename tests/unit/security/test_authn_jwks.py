"""JWT keys from a JWKS served by a real local HTTP server: cached, refetched on an unknown kid at most once per
refresh interval (fetches counted), bounded, and never trusted for a key type or algorithm it does not fit.

Time is a fake clock handed to the cache: no sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from nats_mcp.config.security import JwtIssuerSettings
from nats_mcp.security.authn.jwt import JwksCache, JwtVerifier, TrustedIssuer
from nats_mcp.security.errors import AuthenticationError

ISS = "https://idp.example.test"
AUD = "https://mcp.example.test/mcp"


@dataclass
class JwksServer:
    """A JWKS endpoint whose document, status and hit count the test controls."""

    doc: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    status: int = 200
    raw: bytes | None = None
    hits: int = 0
    url: str = ""


@pytest.fixture
async def jwks() -> AsyncIterator[JwksServer]:
    server = JwksServer()

    async def handler(_request: web.Request) -> web.StreamResponse:
        server.hits += 1
        if server.status != 200:
            return web.Response(status=server.status)
        if server.raw is not None:
            return web.Response(body=server.raw, content_type="application/json")
        return web.json_response(server.doc)

    app = web.Application()
    app.router.add_get("/jwks", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}/jwks"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jwk(private: rsa.RSAPrivateKey, kid: str, alg: str | None = "RS256") -> dict[str, Any]:
    data: dict[str, Any] = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    data.update(kid=kid, use="sig")
    if alg:
        data["alg"] = alg
    return data


def token(private: Any, kid: str | None, alg: str = "RS256", **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "bob", "iat": now, "exp": now + 300, **over}
    return jwt.encode(claims, private, algorithm=alg, headers={"kid": kid} if kid else None)


def verifier(cache: JwksCache, algorithms: tuple[str, ...] = ("RS256",)) -> JwtVerifier:
    return JwtVerifier([TrustedIssuer(ISS, frozenset({AUD}), algorithms, [cache])])


async def reason(v: JwtVerifier, tok: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        await v.verify(tok)
    return info.value.reason


async def test_keys_are_fetched_once_and_cached(jwks: JwksServer, key: rsa.RSAPrivateKey) -> None:
    jwks.doc["keys"] = [jwk(key, "k1")]
    cache = JwksCache(jwks.url, refresh_min_s=60, clock=Clock())
    v = verifier(cache)
    try:
        for _ in range(5):
            assert (await v.verify(token(key, "k1"))).subject == "bob"
        assert jwks.hits == 1
    finally:
        await v.aclose()


async def test_a_flood_of_unknown_kids_costs_at_most_one_fetch_per_interval(
    jwks: JwksServer, key: rsa.RSAPrivateKey
) -> None:
    jwks.doc["keys"] = [jwk(key, "k1")]
    clock = Clock()
    v = verifier(JwksCache(jwks.url, refresh_min_s=60, clock=clock))
    try:
        assert (await v.verify(token(key, "k1"))).subject == "bob"
        made_up = [token(key, secrets.token_hex(8)) for _ in range(40)]
        results = await asyncio.gather(*(v.verify(t) for t in made_up), return_exceptions=True)
        assert all(isinstance(r, AuthenticationError) and r.reason == "unknown_key" for r in results)
        assert jwks.hits == 1  # inside the interval: no refetch at all
        clock.now += 61
        results = await asyncio.gather(*(v.verify(t) for t in made_up), return_exceptions=True)
        assert all(isinstance(r, AuthenticationError) and r.reason == "unknown_key" for r in results)
        assert jwks.hits == 2  # one refetch for 40 concurrent unknown kids
    finally:
        await v.aclose()


async def test_a_rotated_in_key_is_found_after_one_bounded_refetch(
    jwks: JwksServer, key: rsa.RSAPrivateKey, key2: rsa.RSAPrivateKey
) -> None:
    jwks.doc["keys"] = [jwk(key, "k1")]
    clock = Clock()
    v = verifier(JwksCache(jwks.url, refresh_min_s=30, clock=clock))
    try:
        assert (await v.verify(token(key, "k1"))).subject == "bob"
        jwks.doc["keys"] = [jwk(key, "k1"), jwk(key2, "k2")]
        assert await reason(v, token(key2, "k2")) == "unknown_key"  # too soon to refetch
        assert jwks.hits == 1
        clock.now += 31
        assert (await v.verify(token(key2, "k2"))).subject == "bob"
        assert jwks.hits == 2
        # A token claiming k2 but signed by k1's key: the kid picks the key, the signature fails.
        assert await reason(v, token(key, "k2")) == "bad_signature"
    finally:
        await v.aclose()


async def test_keys_are_refreshed_after_max_age(jwks: JwksServer, key: rsa.RSAPrivateKey) -> None:
    jwks.doc["keys"] = [jwk(key, "k1")]
    clock = Clock()
    v = verifier(JwksCache(jwks.url, refresh_min_s=60, max_age_s=900, clock=clock))
    try:
        await v.verify(token(key, "k1"))
        clock.now += 901
        jwks.doc["keys"] = []  # k1 rotated out: a removed key stops working
        assert await reason(v, token(key, "k1")) == "unknown_key"
        assert jwks.hits == 2
    finally:
        await v.aclose()


async def test_an_unreachable_jwks_is_unavailable_and_retries_are_paced(
    jwks: JwksServer, key: rsa.RSAPrivateKey
) -> None:
    jwks.doc["keys"] = [jwk(key, "k1")]
    jwks.status = 503
    clock = Clock()
    v = verifier(JwksCache(jwks.url, refresh_min_s=60, clock=clock))
    try:
        assert await reason(v, token(key, "k1")) == "unavailable"
        assert await reason(v, token(key, "k1")) == "unavailable"
        assert jwks.hits == 1
        jwks.status = 200
        clock.now += 5  # before anything loaded, retries come sooner than refresh_min_s
        assert (await v.verify(token(key, "k1"))).subject == "bob"
        assert jwks.hits == 2
        # Once loaded, a failing IdP does not lose the keys already held.
        jwks.status = 500
        clock.now += 61
        assert await reason(v, token(key, "other")) == "unknown_key"
        assert (await v.verify(token(key, "k1"))).subject == "bob"
    finally:
        await v.aclose()


async def test_the_key_cache_is_bounded(jwks: JwksServer, key: rsa.RSAPrivateKey) -> None:
    jwks.doc["keys"] = [jwk(key, f"k{i}") for i in range(100)]
    v = verifier(JwksCache(jwks.url, refresh_min_s=60, max_keys=10, clock=Clock()))
    try:
        assert (await v.verify(token(key, "k5"))).subject == "bob"
        assert await reason(v, token(key, "k50")) == "unknown_key"
    finally:
        await v.aclose()


async def test_oversize_or_broken_jwks_documents_are_not_used(jwks: JwksServer, key: rsa.RSAPrivateKey) -> None:
    jwks.raw = b'{"keys": [' + b" " * (600 * 1024) + b"]}"
    v = verifier(JwksCache(jwks.url, refresh_min_s=60, clock=Clock()))
    try:
        assert await reason(v, token(key, "k1")) == "unavailable"
    finally:
        await v.aclose()
    jwks.raw = b"<html>not json</html>"
    v = verifier(JwksCache(jwks.url, refresh_min_s=60, clock=Clock()))
    try:
        assert await reason(v, token(key, "k1")) == "unavailable"
    finally:
        await v.aclose()


async def test_jwk_algorithm_and_key_type_are_enforced(jwks: JwksServer, key: rsa.RSAPrivateKey) -> None:
    secret = base64.urlsafe_b64encode(b"s" * 32).rstrip(b"=").decode()
    private = jwk(key, "priv")
    private.update(RSAAlgorithm.to_jwk(key, as_dict=True))  # a private JWK published by mistake
    jwks.doc["keys"] = [
        jwk(key, "rs384", alg="RS384"),
        {"kty": "oct", "k": secret, "kid": "hs", "alg": "HS256"},
        private,
        jwk(key, "enc") | {"use": "enc"},
    ]
    v = verifier(JwksCache(jwks.url, refresh_min_s=60, clock=Clock()), algorithms=("RS256", "RS384"))
    try:
        # The JWK says RS384: an RS256 token naming it is refused.
        assert await reason(v, token(key, "rs384", alg="RS256")) == "algorithm_not_allowed"
        assert (await v.verify(token(key, "rs384", alg="RS384"))).subject == "bob"
        # A symmetric key in the JWKS never makes HS256 acceptable.
        hs = jwt.encode(
            {"iss": ISS, "aud": AUD, "sub": "eve", "exp": int(time.time()) + 60},
            b"s" * 32,
            algorithm="HS256",
            headers={"kid": "hs"},
        )
        assert await reason(v, hs) == "algorithm_not_allowed"
        assert await reason(v, token(key, "hs")) == "unknown_key"
        assert await reason(v, token(key, "priv")) == "unknown_key"  # private material is ignored
        assert await reason(v, token(key, "enc")) == "unknown_key"  # an encryption key does not verify
    finally:
        await v.aclose()


async def test_a_token_without_kid_tries_the_fitting_keys(
    jwks: JwksServer, key: rsa.RSAPrivateKey, key2: rsa.RSAPrivateKey
) -> None:
    jwks.doc["keys"] = [jwk(key, "k1"), jwk(key2, "k2")]
    v = verifier(JwksCache(jwks.url, refresh_min_s=60, clock=Clock()))
    try:
        assert (await v.verify(token(key2, None))).subject == "bob"
    finally:
        await v.aclose()


async def test_issuer_from_settings_uses_the_jwks_url(jwks: JwksServer, key: rsa.RSAPrivateKey) -> None:
    jwks.doc["keys"] = [jwk(key, "k1")]
    cfg = JwtIssuerSettings(issuer=ISS, audience=AUD, jwks_url=jwks.url, jwks_refresh_min_s=10)
    v = JwtVerifier([TrustedIssuer.from_settings(cfg)])
    try:
        assert (await v.verify(token(key, "k1"))).issuer == ISS
    finally:
        await v.aclose()


def test_plain_http_to_a_remote_jwks_is_refused() -> None:
    with pytest.raises(ValueError, match="https"):
        JwksCache("http://idp.example.test/jwks")
