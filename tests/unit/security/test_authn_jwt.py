"""JWT verification against static PEM keys: every check is an attack tried for real and refused with its reason.

Tokens are signed at test time with real RSA/EC keys; no network. The JWKS path is in test_authn_jwks.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nats_mcp.config.security import JwtIssuerSettings
from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.jwt import JwtVerifier, TrustedIssuer, key_fits, load_public_key_file, secure_url
from nats_mcp.security.errors import AuthenticationError

ISS = "https://idp.example.test/realms/agents"
AUD = "https://mcp.example.test/mcp"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def write_pem(tmp_path: Path, key: Any, name: str = "idp.pem") -> Path:
    path = tmp_path / name
    path.write_bytes(public_pem(key))
    return path


def verifier_for(tmp_path: Path, key: Any, **cfg: Any) -> JwtVerifier:
    settings = JwtIssuerSettings(issuer=ISS, audience=AUD, public_key_files=[write_pem(tmp_path, key)], **cfg)
    return JwtVerifier([TrustedIssuer.from_settings(settings)])


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "nbf": now, "exp": now + 600}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, alg: str = "RS256", headers: dict[str, Any] | None = None, **over: Any) -> str:
    return jwt.encode(claims(**over), key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> tuple[str, str]:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return signing_input, f"{signing_input}.{b64(signature)}"


async def refused(verifier: JwtVerifier, token: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as info:
        await verifier.verify(token)
    assert not token or token not in str(info.value)
    return info.value


async def test_valid_token_maps_to_a_principal(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = verifier_for(tmp_path, rsa_key)
    token = sign(
        rsa_key, scope="tools:read tools:call", roles=["agent", "ops"], namespaces=["proj-a"], azp="cli", email="x@y"
    )
    principal = await verifier.authenticate(Credentials(bearer=token, agent="worker-1", peer="10.0.0.5"))
    assert principal.subject == "alice"
    assert principal.issuer == ISS
    assert principal.method == "jwt"
    assert principal.scopes == {"tools:read", "tools:call"}
    assert principal.groups == {"agent", "ops"}
    assert principal.roles == frozenset()  # the policy maps groups to roles
    assert principal.namespaces == {"proj-a"}
    assert principal.agent == "worker-1" and principal.peer == "10.0.0.5"
    assert set(principal.claims) == {"sub", "iss", "aud", "exp", "azp"}  # only non-secret claims kept
    assert token not in repr(principal)


async def test_scp_list_roles_string_custom_roles_claim_and_no_namespace_limit(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = verifier_for(tmp_path, rsa_key, roles_claim="groups")
    token = sign(rsa_key, scp=["a", "b"], groups="admins  agents", roles=["ignored"], aud=["other", AUD])
    principal = await verifier.verify(token)
    assert principal.scopes == {"a", "b"}
    assert principal.groups == {"admins", "agents"}
    assert principal.namespaces is None


async def test_expired_token_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = verifier_for(tmp_path, rsa_key, leeway_s=5)
    now = int(time.time())
    assert (await refused(verifier, sign(rsa_key, iat=now - 3600, nbf=now - 3600, exp=now - 60))).reason == "expired"
    # Within the leeway it still passes (clock skew between IdP and server).
    assert (await verifier.verify(sign(rsa_key, exp=now - 2))).subject == "alice"


async def test_token_not_yet_valid_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = verifier_for(tmp_path, rsa_key, leeway_s=5)
    now = int(time.time())
    assert (await refused(verifier, sign(rsa_key, nbf=now + 600))).reason == "not_yet_valid"
    assert (await refused(verifier, sign(rsa_key, iat=now + 600, nbf=None))).reason == "not_yet_valid"


async def test_wrong_audience_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = verifier_for(tmp_path, rsa_key)
    assert (await refused(verifier, sign(rsa_key, aud="https://other.example.test/mcp"))).reason == "bad_audience"
    assert (await refused(verifier, sign(rsa_key, aud=[AUD + "/"]))).reason == "bad_audience"
    assert (await refused(verifier, sign(rsa_key, aud=None))).reason == "malformed"  # aud is required


async def test_wrong_issuer_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = verifier_for(tmp_path, rsa_key)
    for iss in ("https://evil.example.test/realms/agents", ISS + "/", ISS.upper()):
        error = await refused(verifier, sign(rsa_key, iss=iss))
        assert error.reason == "bad_issuer"
        assert error.subject == "alice"  # what it claimed, for the lockout, never trusted
    assert (await refused(verifier, sign(rsa_key, iss=None))).reason == "bad_issuer"


async def test_alg_none_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = verifier_for(tmp_path, rsa_key)
    for alg in ("none", "None", "NONE"):
        _, token = raw_token({"alg": alg, "typ": "JWT"}, claims())
        assert (await refused(verifier, token)).reason == "algorithm_not_allowed"
    _, token = raw_token({"typ": "JWT"}, claims())  # no alg at all
    assert (await refused(verifier, token)).reason == "algorithm_not_allowed"


async def test_hs256_signed_with_the_rsa_public_key_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    """The classic key-confusion attack: the public PEM used as an HMAC secret."""
    verifier = verifier_for(tmp_path, rsa_key, algorithms=["RS256", "PS256"])
    pem = public_pem(rsa_key)
    for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
        signing_input, _ = raw_token({"alg": alg, "typ": "JWT"}, claims())
        signature = hmac.new(pem, signing_input.encode(), digest).digest()
        token = f"{signing_input}.{b64(signature)}"
        assert (await refused(verifier, token)).reason == "algorithm_not_allowed"


async def test_algorithm_outside_the_pinned_list_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = verifier_for(tmp_path, rsa_key)  # RS256 only
    assert (await refused(verifier, sign(rsa_key, alg="PS256"))).reason == "algorithm_not_allowed"
    assert (await refused(verifier, sign(ec_key, alg="ES256"))).reason == "algorithm_not_allowed"


async def test_allowed_algorithm_without_a_fitting_key_is_unknown_key(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = verifier_for(tmp_path, rsa_key, algorithms=["RS256", "ES256"])
    # An ES256 token can never be checked with the RSA key the issuer has: refused without trying it.
    assert (await refused(verifier, sign(ec_key, alg="ES256"))).reason == "unknown_key"
    assert (await verifier.verify(sign(rsa_key, alg="RS256"))).subject == "alice"


async def test_pss_and_ec_issuers(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    assert (await verifier_for(tmp_path, rsa_key, algorithms=["PS256"]).verify(sign(rsa_key, alg="PS256"))).subject
    ec_verifier = verifier_for(tmp_path, ec_key, algorithms=["ES256"])
    assert (await ec_verifier.verify(sign(ec_key, alg="ES256"))).subject == "alice"


async def test_signature_by_another_key_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = verifier_for(tmp_path, rsa_key)
    assert (await refused(verifier, sign(other_rsa_key))).reason == "bad_signature"


async def test_tampered_token_is_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = verifier_for(tmp_path, rsa_key)
    token = sign(rsa_key, roles=["agent"])
    header, payload, signature = token.split(".")
    # Payload changed (privilege escalation), signature kept.
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["roles"] = ["admin"]
    assert (await refused(verifier, f"{header}.{b64(json.dumps(forged).encode())}.{signature}")).reason == (
        "bad_signature"
    )
    # Signature bytes flipped.
    sig = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    sig[10] ^= 0x01
    assert (await refused(verifier, f"{header}.{payload}.{b64(bytes(sig))}")).reason == "bad_signature"
    # Signature stripped.
    assert (await refused(verifier, f"{header}.{payload}.")).reason == "bad_signature"


async def test_missing_sub_and_exp_are_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = verifier_for(tmp_path, rsa_key)
    assert (await refused(verifier, sign(rsa_key, sub=None))).reason == "malformed"
    assert (await refused(verifier, sign(rsa_key, sub=""))).reason == "malformed"
    assert (await refused(verifier, sign(rsa_key, exp=None))).reason == "malformed"  # a token must expire


async def test_unreadable_namespace_limit_is_refused_not_ignored(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = verifier_for(tmp_path, rsa_key)
    assert (await refused(verifier, sign(rsa_key, namespaces="proj-a"))).reason == "malformed"
    assert (await refused(verifier, sign(rsa_key, namespaces=[1]))).reason == "malformed"
    assert (await verifier.verify(sign(rsa_key, namespaces=[]))).namespaces == frozenset()  # none allowed


async def test_garbage_and_oversize_tokens_are_malformed(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = verifier_for(tmp_path, rsa_key)
    for token in ("abc", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.x", "", sign(rsa_key) + "x" * 20_000):
        assert (await refused(verifier, token)).reason == "malformed"
    _, payload, signature = sign(rsa_key).split(".")
    header = b64(json.dumps({"alg": "RS256", "kid": 7}).encode())
    assert (await refused(verifier, f"{header}.{payload}.{signature}")).reason == "malformed"  # kid not a string


async def test_missing_bearer_is_missing_credentials(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(AuthenticationError) as info:
        await verifier_for(tmp_path, rsa_key).authenticate(Credentials())
    assert info.value.reason == "missing_credentials"


async def test_no_token_or_secret_in_logs_or_errors(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier = verifier_for(tmp_path, rsa_key)
    now = int(time.time())
    tokens = [
        sign(rsa_key, exp=now - 100, iat=now - 200, nbf=now - 200),
        sign(rsa_key, aud="x"),
        sign(rsa_key, iss="y"),
        sign(other_rsa_key),
        sign(rsa_key, sub=None),
    ]
    messages = []
    for token in tokens:
        with pytest.raises(AuthenticationError) as info:
            await verifier.verify(token)
        messages.append(str(info.value))
    assert caplog.records, "refusals are logged (reason only)"
    for token in tokens:
        signature = token.rsplit(".", 1)[1]
        for text in (caplog.text, *messages):
            assert token not in text and signature not in text


def test_key_files_and_urls(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ValueError, match="not a PEM"):
        load_public_key_file(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_public_key_file(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="neither jwks_url nor public_key_files"):
        TrustedIssuer.from_settings(JwtIssuerSettings(issuer=ISS, audience=AUD))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key is the attack
    assert not key_fits("RS256", small.public_key())
    assert key_fits("RS256", rsa_key.public_key())
    assert not key_fits("ES256", rsa_key.public_key())
    assert not key_fits("HS256", rsa_key.public_key())
    assert secure_url("https://idp.example/jwks", "x")
    assert secure_url("http://127.0.0.1:8080/jwks", "x")
    with pytest.raises(ValueError, match="https"):
        secure_url("http://idp.example/jwks", "jwks_url")
    with pytest.raises(ValueError, match="https"):
        secure_url("file:///etc/passwd", "jwks_url")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_a_1024_bit_rsa_key_never_verifies(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key is the attack
    verifier = verifier_for(tmp_path, small)
    assert (await refused(verifier, sign(small))).reason == "unknown_key"


def test_an_issuer_configured_twice_is_an_error(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    cfg = JwtIssuerSettings(issuer=ISS, audience=AUD, public_key_files=[write_pem(tmp_path, rsa_key)])
    with pytest.raises(ValueError, match="twice"):
        JwtVerifier([TrustedIssuer.from_settings(cfg), TrustedIssuer.from_settings(cfg)])
