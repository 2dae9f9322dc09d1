"""Certificate pinning of the JWKS and introspection fetches, against a real HTTPS server (aiohttp, trustme certs).

The right pin fetches keys and answers; two pins stage a rotation; a wrong pin is refused with the setting and the
key seen in the log and no request reaching the server (no token, no client secret); the doctor's probe shows the
keys and whether the pins match; the server coming back on the same port with another key is refused on the new
connection.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from nats_mcp.config.security import IntrospectionSettings, JwtIssuerSettings, SecuritySettings
from nats_mcp.config.settings import Settings
from nats_mcp.core.pins import pins_of_file
from nats_mcp.security.authn.endpoints import probe_all
from nats_mcp.security.authn.introspection import Introspector
from nats_mcp.security.authn.jwt import JwksCache, TrustedIssuer
from nats_mcp.security.errors import AuthenticationError
from tests.support.certs import CertFiles, make_tls_material

WRONG_PIN = "sha256/" + "B" * 43 + "="
RESOURCE = "https://mcp.example.test/mcp"
SECRET = "pinned-client-secret"
TOKEN = "pinned-opaque-token"


class HttpsServer:
    """A JWKS and introspection endpoint over TLS on a fixed port; it records every request it gets."""

    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        self.jwks = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}
        self.requests: list[bytes] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests.append(await request.read())
        return web.json_response(self.jwks)

    async def _introspect(self, request: web.Request) -> web.Response:
        self.requests.append(await request.read())
        return web.json_response({"active": True, "sub": "carol", "aud": RESOURCE, "iss": "https://as.test"})

    async def start(self, cert: CertFiles) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert.cert_file, cert.key_file)
        app = web.Application()
        app.router.add_get("/jwks.json", self._jwks)
        app.router.add_post("/introspect", self._introspect)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=ctx, reuse_address=True)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"


def introspector(server: HttpsServer, ca_file: Path, *pins: str) -> Introspector:
    cfg = IntrospectionSettings(
        url=server.url("/introspect"),
        client_id="nats-mcp",
        client_secret=SECRET,  # type: ignore[arg-type]  # pydantic makes the SecretStr
        audience=RESOURCE,
        ca_file=ca_file,
        pins=list(pins),
    )
    return Introspector(cfg)


def probe_settings(server: HttpsServer, ca_file: Path, jwks_pins: list[str], intro_pins: list[str]) -> Settings:
    issuer = JwtIssuerSettings(
        issuer="https://idp.test",
        audience=RESOURCE,
        jwks_url=server.url("/jwks.json"),
        jwks_ca_file=ca_file,
        jwks_pins=jwks_pins,
    )
    intro = IntrospectionSettings(url=server.url("/introspect"), ca_file=ca_file, pins=intro_pins)
    return Settings(security=SecuritySettings(jwt_issuers=[issuer], introspection=intro))


def jwks(server: HttpsServer, ca_file: Path, *pins: str) -> JwksCache:
    cfg = JwtIssuerSettings(
        issuer="https://idp.test",
        audience=RESOURCE,
        jwks_url=server.url("/jwks.json"),
        jwks_ca_file=ca_file,
        jwks_pins=list(pins),
        algorithms=["ES256"],
    )
    source = TrustedIssuer.from_settings(cfg).keys[0]
    assert isinstance(source, JwksCache)
    return source


async def test_jwks_and_introspection_pins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    material = make_tls_material(tmp_path / "certs")
    other = make_tls_material(tmp_path / "other")
    bundle = tmp_path / "both-cas.pem"  # trusts both servers: only the pins tell them apart
    bundle.write_bytes(material.ca_file.read_bytes() + other.ca_file.read_bytes())
    leaf, ca = pins_of_file(material.server.cert_file)[0], pins_of_file(material.ca_file)[0]
    server = HttpsServer()
    await server.start(material.server)
    caplog.set_level(logging.WARNING)
    try:
        # The right pins: the leaf's key, the CA's key, or a staged rotation (an unknown next pin and the current).
        for pins in ([leaf], [ca], [WRONG_PIN, leaf]):
            cache = jwks(server, bundle, *pins)
            assert len(await cache.keys_for("k1", "ES256")) == 1
            await cache.aclose()
        intro = introspector(server, bundle, leaf)
        assert (await intro.verify(TOKEN)).subject == "carol"
        assert any(TOKEN.encode() in r for r in server.requests)  # the recording sees what is sent

        # A wrong pin: refused, nothing reaches the server, the log names the setting and the key seen.
        server.requests.clear()
        cache = jwks(server, bundle, WRONG_PIN)
        with pytest.raises(AuthenticationError) as refused:
            await cache.keys_for("k1", "ES256")
        assert refused.value.reason == "unavailable"
        await cache.aclose()
        wrong = introspector(server, bundle, WRONG_PIN)
        with pytest.raises(AuthenticationError) as refused:
            await wrong.verify(TOKEN)
        assert refused.value.reason == "unavailable"
        await wrong.aclose()
        assert server.requests == []
        logged = caplog.text
        assert "security.jwt_issuers[].jwks_pins" in logged and "security.introspection.pins" in logged
        assert leaf in logged and TOKEN not in logged and SECRET not in logged

        # What `nats-mcp doctor` shows: the chain's keys and whether the configured pins match (nothing is sent).
        seen = await probe_all(probe_settings(server, bundle, [ca], [WRONG_PIN]), 5)
        assert [(e.name, e.status) for e in seen] == [("jwks https://idp.test", "pass"), ("introspection", "fail")]
        assert f"jwks_pins matches {ca}" in seen[0].detail and f"{leaf}, {ca}" in seen[0].detail
        assert "security.introspection.pins" in seen[1].detail and leaf in seen[1].detail
        assert server.requests == []

        # The server comes back on its port with another key: the pinned client's next connection is refused.
        await server.stop()
        await server.start(other.server)
        intro.forget()
        with pytest.raises(AuthenticationError):
            await intro.verify(TOKEN)
        assert server.requests == []
        assert pins_of_file(other.server.cert_file)[0] in caplog.text
        await intro.aclose()
    finally:
        await server.stop()


def test_pins_need_https_and_are_checked_at_load(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"security\.introspection\.pins"):
        IntrospectionSettings(url="https://as.test/introspect", pins=["sha256/nope"])
    with pytest.raises(ValueError, match="jwks_pins"):
        JwtIssuerSettings(issuer="https://idp.test", audience=RESOURCE, jwks_pins=["sha256/" + "A" * 44])
    cfg = IntrospectionSettings(url="http://127.0.0.1:1/introspect", audience=RESOURCE, pins=[WRONG_PIN])
    with pytest.raises(ValueError, match="https://"):
        Introspector(cfg)
