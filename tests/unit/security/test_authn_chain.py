"""Routing credentials to the one provider that may check them, and what leaves the chain when a provider breaks."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.config.security import IntrospectionSettings, JwtIssuerSettings
from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.apikeys import ApiKeys
from nats_mcp.security.authn.chain import Authenticator
from nats_mcp.security.authn.introspection import Introspector
from nats_mcp.security.authn.jwt import JwtVerifier, TrustedIssuer
from nats_mcp.security.authn.mtls import MtlsAuthenticator
from nats_mcp.security.dev import tokens as devtoken
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.principal import Principal
from tests.support.env import settings_for

ISS = "https://idp.example.test"
AUD = "https://mcp.example.test/mcp"
API_KEY = "nmk_0123456789ab_" + "A" * 43
CERT: dict[str, Any] = {"subjectAltName": (("URI", "spiffe://td/agent"),)}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwt_for(key: rsa.RSAPrivateKey, iss: str = ISS) -> str:
    now = int(time.time())
    return jwt.encode({"iss": iss, "aud": AUD, "sub": "dan", "exp": now + 60}, key, algorithm="RS256")


@pytest.fixture
def verifier(tmp_path: Path, key: rsa.RSAPrivateKey) -> JwtVerifier:
    pem = tmp_path / "idp.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1))
    return JwtVerifier(
        [TrustedIssuer.from_settings(JwtIssuerSettings(issuer=ISS, audience=AUD, public_key_files=[pem]))]
    )


@pytest.fixture
def apikeys(tmp_path: Path) -> ApiKeys:
    return ApiKeys(NatsConnection(settings_for(tmp_path, NATS_URL="nats://127.0.0.1:1")))  # never started here


@pytest.fixture
def introspector() -> Introspector:
    return Introspector(
        IntrospectionSettings(url="https://as.example.test/introspect", client_id="c", client_secret=SecretStr("s")),
        resource_urls=["https://mcp.example.test/mcp"],
    )


def route(auth: Authenticator, **creds: Any) -> str:
    return auth.route(Credentials(**creds))[0]


def refusal(auth: Authenticator, **creds: Any) -> str:
    with pytest.raises(AuthenticationError) as info:
        auth.route(Credentials(**creds))
    return info.value.reason


def test_routing_with_every_provider(
    key: rsa.RSAPrivateKey, verifier: JwtVerifier, apikeys: ApiKeys, introspector: Introspector
) -> None:
    auth = Authenticator(jwt=verifier, introspection=introspector, apikeys=apikeys, mtls=MtlsAuthenticator())
    assert route(auth, api_key=API_KEY) == "apikey"
    assert route(auth, bearer=API_KEY) == "apikey"  # an API key sent as a bearer
    assert route(auth, api_key=API_KEY, bearer=jwt_for(key), peer_cert=CERT) == "apikey"
    assert route(auth, bearer=jwt_for(key)) == "jwt"
    assert route(auth, bearer=jwt_for(key), peer_cert=CERT) == "jwt"  # the token names the caller
    assert route(auth, bearer=jwt_for(key, iss="https://other-as.example.test")) == "introspection"
    assert route(auth, bearer="opaque-access-token") == "introspection"
    assert route(auth, peer_cert=CERT) == "mtls"
    assert refusal(auth) == "missing_credentials"
    assert refusal(auth, peer_cert={}) == "missing_credentials"  # an unverified certificate is no credential


def test_a_credential_of_a_disabled_kind_is_refused_not_rerouted(key: rsa.RSAPrivateKey, verifier: JwtVerifier) -> None:
    auth = Authenticator(jwt=verifier)
    assert refusal(auth, api_key=API_KEY) == "missing_credentials"
    assert refusal(auth, bearer=API_KEY) == "missing_credentials"
    assert refusal(auth, bearer="opaque-access-token") == "malformed"
    assert refusal(auth, peer_cert=CERT) == "missing_credentials"
    assert route(auth, bearer=jwt_for(key, iss="https://other-as.example.test")) == "jwt"  # refused there
    assert refusal(Authenticator(), bearer=jwt_for(key)) == "bad_issuer"


async def test_an_untrusted_issuer_is_refused_by_the_jwt_verifier(
    key: rsa.RSAPrivateKey, verifier: JwtVerifier
) -> None:
    with pytest.raises(AuthenticationError) as info:
        await Authenticator(jwt=verifier).authenticate(Credentials(bearer=jwt_for(key, iss="https://evil.test")))
    assert info.value.reason == "bad_issuer"
    principal = await Authenticator(jwt=verifier).authenticate(Credentials(bearer=jwt_for(key), peer="10.1.2.3"))
    assert principal.subject == "dan" and principal.peer == "10.1.2.3"


async def test_mtls_through_the_chain() -> None:
    principal = await Authenticator(mtls=MtlsAuthenticator()).authenticate(Credentials(peer_cert=CERT))
    assert principal.cert_identity == "spiffe://td/agent"


async def test_a_broken_provider_becomes_unavailable_without_leaking(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MtlsAuthenticator):
        async def authenticate(self, credentials: Credentials) -> Principal:
            raise RuntimeError(f"boom while handling {credentials.bearer} and {credentials.api_key}")

    caplog.set_level(logging.DEBUG)
    auth = Authenticator(mtls=Broken())
    bearer = "leaky-bearer-value-123456"
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(Credentials(peer_cert=CERT, bearer=None, api_key=None))
    assert info.value.reason == "unavailable"
    auth = Authenticator(introspection=None, mtls=Broken())
    auth.introspection = Broken()  # type: ignore[assignment]
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(Credentials(bearer=bearer))
    assert info.value.reason == "unavailable"
    assert "RuntimeError" in caplog.text
    assert bearer not in caplog.text and bearer not in str(info.value)


def test_from_settings(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, NATS_MCP_SECURITY_DEV_TOKENS="true", NATS_MCP_EMBEDDED_DATA_DIR=str(tmp_path / "data")
    )
    conn = NatsConnection(settings)
    auth = Authenticator.from_settings(settings, conn)
    assert auth.jwt is not None and auth.jwt.trusts(devtoken.DEV_ISSUER)
    assert auth.apikeys is not None and auth.mtls is not None and auth.introspection is None
    assert Authenticator.from_settings(settings).apikeys is None  # no connection, no API keys
    plain = Authenticator.from_settings(settings_for(tmp_path, NATS_MCP_SECURITY_API_KEYS="false"), conn, mtls=False)
    assert plain.jwt is None and plain.apikeys is None and plain.mtls is None
    # introspection: the audience is this server's resource URL unless one is configured; neither: refused
    asks = settings_for(
        tmp_path,
        NATS_MCP_SECURITY_INTROSPECTION_URL="https://as.example.test/introspect",
        NATS_MCP_SECURITY_DEV_TOKENS="true",
    )
    with_url = Authenticator.from_settings(asks, conn, dev_audiences=iter(["https://mcp.example.test/mcp"]))
    assert with_url.introspection is not None
    assert with_url.introspection.audiences == {"https://mcp.example.test/mcp"}
    assert with_url.jwt is not None  # dev tokens on: the one-shot iterable fed both providers
    with pytest.raises(ValueError, match="audience"):
        Authenticator.from_settings(asks, conn)


@pytest.mark.parametrize("issuer", ["apikey", "local", "mtls", "mtls-dns", "introspection:https://as.example.test"])
def test_a_jwt_issuer_may_not_take_another_providers_issuer(issuer: str) -> None:
    # issue 19 #5: its tokens' subjects would be those providers' principals (an API key, a certificate, ...)
    with pytest.raises(ValueError, match="reserved"):
        JwtIssuerSettings(issuer=issuer, audience=AUD, public_key_files=[Path("k.pem")])
