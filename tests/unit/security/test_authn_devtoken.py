"""Development tokens: the local signing key (made once, mode 0600, race-safe), and a verifier that trusts the dev
issuer only when ``security.dev_tokens`` is on and only for this server's audiences."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nats_mcp.config.security import JwtIssuerSettings
from nats_mcp.config.settings import Settings
from nats_mcp.security.authn.jwt import JwtVerifier
from nats_mcp.security.dev import tokens as devtoken
from nats_mcp.security.errors import AuthenticationError
from tests.support.env import settings_for


def dev_settings(tmp_path: Path, on: bool = True, **env: str) -> Settings:
    return settings_for(
        tmp_path,
        NATS_MCP_EMBEDDED_DATA_DIR=str(tmp_path / "data"),
        NATS_MCP_SECURITY_DEV_TOKENS="true" if on else "false",
        **env,
    )


def test_the_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    path = devtoken.key_path(dev_settings(tmp_path))
    assert path == tmp_path / "data" / "dev-jwt-key.pem"
    first = devtoken.load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = devtoken.load_or_create_key(path)
    assert first.kid == second.kid
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_racing_processes_end_up_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "race" / "dev-jwt-key.pem"
    kids: list[str] = []
    barrier = threading.Barrier(8)

    def make() -> None:
        barrier.wait()
        kids.append(devtoken.load_or_create_key(path).kid)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kids) == 8 and len(set(kids)) == 1


def test_a_corrupt_key_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "dev-jwt-key.pem"
    path.write_text("garbage")
    with pytest.raises(devtoken.DevKeyError, match="cannot read"):
        devtoken.load_or_create_key(path)


async def test_a_dev_token_verifies_when_dev_tokens_are_on(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    key = devtoken.load_or_create_key(devtoken.key_path(settings))
    token = devtoken.issue(key, "dev-alice", roles=["agent"], namespaces=["proj"], ttl_s=600)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == key.kid
    principal = await JwtVerifier.from_settings(settings).verify(token)
    assert principal.subject == "dev-alice"
    assert principal.issuer == devtoken.DEV_ISSUER
    assert principal.groups == {"agent"}
    assert principal.namespaces == {"proj"}
    assert principal.claims["dev"] is True


async def test_the_server_makes_the_key_if_issuing_has_not_yet(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    verifier = JwtVerifier.from_settings(settings)
    other = devtoken.DevKey(Ed25519PrivateKey.generate(), tmp_path / "elsewhere.pem")
    with pytest.raises(AuthenticationError) as info:
        await verifier.verify(devtoken.issue(other, "mallory"))
    assert info.value.reason == "bad_signature"
    assert devtoken.key_path(settings).exists()
    key = devtoken.load_or_create_key(devtoken.key_path(settings))
    assert (await verifier.verify(devtoken.issue(key, "alice"))).subject == "alice"


async def test_dev_tokens_are_refused_when_off(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path, on=False)
    key = devtoken.load_or_create_key(devtoken.key_path(settings))
    with pytest.raises(AuthenticationError) as info:
        await JwtVerifier.from_settings(settings).verify(devtoken.issue(key, "alice"))
    assert info.value.reason == "bad_issuer"


async def test_dev_audiences(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    key = devtoken.load_or_create_key(devtoken.key_path(settings))
    verifier = JwtVerifier.from_settings(settings, dev_audiences=["http://127.0.0.1:8765/mcp"])
    assert await verifier.verify(devtoken.issue(key, "a", audience="http://127.0.0.1:8765/mcp"))
    with pytest.raises(AuthenticationError) as info:
        await verifier.verify(devtoken.issue(key, "a", audience="https://someone-else.example/mcp"))
    assert info.value.reason == "bad_audience"
    # The configured issuers' audience (this server's resource URL) is accepted too, and the local default.
    settings.security.jwt_issuers = [JwtIssuerSettings(issuer="https://idp.test", audience="https://mcp.test/mcp")]
    assert devtoken.accepted_audiences(settings) == {"urn:nats-mcp:local", "https://mcp.test/mcp"}


async def test_a_dev_issuer_token_without_the_dev_claim_is_refused(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    key = devtoken.load_or_create_key(devtoken.key_path(settings))
    now = int(time.time())
    forged = jwt.encode(
        {"iss": devtoken.DEV_ISSUER, "aud": devtoken.DEV_AUDIENCE, "sub": "x", "exp": now + 60},
        key.private_key,
        algorithm="EdDSA",
    )
    with pytest.raises(AuthenticationError) as info:
        await JwtVerifier.from_settings(settings).verify(forged)
    assert info.value.reason == "malformed"


async def test_an_expired_dev_token_is_refused(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    key = devtoken.load_or_create_key(devtoken.key_path(settings))
    old = devtoken.issue(key, "alice", ttl_s=60, now=time.time() - 3600)
    with pytest.raises(AuthenticationError) as info:
        await JwtVerifier.from_settings(settings).verify(old)
    assert info.value.reason == "expired"


def test_lifetime_and_subject_are_bounded(tmp_path: Path) -> None:
    key = devtoken.load_or_create_key(tmp_path / "k.pem")
    with pytest.raises(ValueError, match="lifetime"):
        devtoken.issue(key, "alice", ttl_s=31 * 86_400)
    with pytest.raises(ValueError, match="lifetime"):
        devtoken.issue(key, "alice", ttl_s=0)
    with pytest.raises(ValueError, match="subject"):
        devtoken.issue(key, "")
