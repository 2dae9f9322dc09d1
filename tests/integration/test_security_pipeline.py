"""The whole security pipeline against real NATS: real providers, the guard and the hash-chained audit log.

Every attack of the issue's acceptance list is tried for real and refused, each refusal leaves an audit
record, the chain verifies, and no token, key or message body appears in any log line or stored record.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nats_mcp.api.tools.coordination import needs_of
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.config.security import AuditSettings, JwtIssuerSettings, SecuritySettings
from nats_mcp.security.audit.log import AuditLog
from nats_mcp.security.audit.store import read_range, stream_info, verify_stream
from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.apikeys import ApiKeys
from nats_mcp.security.authn.chain import Authenticator
from nats_mcp.security.authn.jwt import JwtVerifier, TrustedIssuer
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.guard import CallContext, Guard, Refused
from nats_mcp.security.policy import Policy, parse_policy

ISS = "https://idp.example.test"
AUD = "https://mcp.example.test/mcp"
BODY = "the secret plan: ship on friday"

POLICY = """
roles:
  agent: {tools: ["channels_*", "messages_*"], namespaces: ["team-s"], channels: {read: ["*"], send: ["*"]}}
groups: {developers: [agent]}
principals: [{issuer: apikey, subject: "*", roles: [agent]}]
"""


@pytest.fixture(scope="module")
def idp_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(key: Any, alg: str = "RS256", headers: dict[str, Any] | None = None, **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "nbf": now, "exp": now + 600, "roles": ["developers"]}
    claims.update(over)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Pipeline:
    def __init__(self, guard: Guard, auth: Authenticator, keys: ApiKeys, audit: AuditLog, conn: NatsConnection) -> None:
        self.guard, self.auth, self.keys, self.audit, self.conn = guard, auth, keys, audit, conn

    async def login(self, credentials: Credentials) -> Any:
        return await self.guard.authenticate(self.auth, credentials, "http")

    async def refused_login(self, credentials: Credentials) -> str:
        with pytest.raises(AuthenticationError) as info:
            await self.login(credentials)
        return info.value.reason

    async def call(self, principal: Any, tool: str, args: dict[str, Any], namespace: str = "team-s") -> str:
        async def run() -> str:
            return "ok"

        return await self.guard.call(
            CallContext(principal, "http", namespace), tool, args, run, lambda r: r, needs=needs_of(tool)
        )

    async def stored(self) -> list[bytes]:
        """Every stored audit record of this process's chain, as stored."""
        assert await self.audit.flush(10)
        info = await stream_info(self.conn)
        assert info is not None
        found = [m.data async for m in read_range(self.conn.client, info.state.first_seq, info.state.last_seq)]
        return [data for data in found if json.loads(data)["chain"] == self.audit.chain]


@pytest.fixture
async def pipeline(tmp_path: Path, nats_conn: NatsConnection, idp_key: rsa.RSAPrivateKey) -> AsyncIterator[Pipeline]:
    pem = tmp_path / "idp.pem"
    pem.write_bytes(
        idp_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    issuer = TrustedIssuer.from_settings(JwtIssuerSettings(issuer=ISS, audience=AUD, public_key_files=[pem]))
    keys = ApiKeys(nats_conn)
    auth = Authenticator(jwt=JwtVerifier([issuer]), apikeys=keys)
    settings = SecuritySettings.model_validate(
        {
            "rate_per_principal": {"rate_per_s": 5, "burst": 5},
            "lockout": {"max_failures": 3, "base_s": 30},
            "max_request_bytes": 4096,
            "max_json_depth": 8,
        }
    )
    audit = AuditLog.from_settings(AuditSettings(file=tmp_path / "audit.jsonl"), nats_conn, transport="http")
    guard = Guard(settings, Policy(parse_policy(POLICY)), audit)
    yield Pipeline(guard, auth, keys, audit, nats_conn)
    await audit.close()
    await auth.aclose()


async def test_every_attack_is_refused_and_audited(
    pipeline: Pipeline, idp_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = idp_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    good = token(idp_key)
    header, payload, signature = good.split(".")
    tampered_payload = b64(json.dumps({**json.loads(base64.urlsafe_b64decode(payload + "==")), "sub": "root"}).encode())
    attacks = {
        "expired": token(idp_key, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        "wrong audience": token(idp_key, aud="https://elsewhere.test"),
        "wrong issuer": token(idp_key, iss="https://evil.test"),
        "alg none": f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}.",
        "unknown kid": token(other_key, headers={"kid": "rotated-away"}),
        "tampered signature": f"{header}.{tampered_payload}.{signature}",
    }
    # PyJWT refuses to HMAC-sign with a PEM key, so the confused token is built by hand, as an attacker would.
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{payload}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    attacks["HS256 with the RS public key"] = f"{signing_input}.{b64(mac)}"
    reasons = {}
    for i, (name, bearer) in enumerate(attacks.items()):
        reasons[name] = await pipeline.refused_login(Credentials(bearer=bearer, peer=f"10.0.0.{i + 10}"))
    assert reasons == {
        "expired": "expired",
        "wrong audience": "bad_audience",
        "wrong issuer": "bad_issuer",
        "alg none": reasons["alg none"],  # algorithm_not_allowed or malformed, both refusals
        "HS256 with the RS public key": "algorithm_not_allowed",
        "unknown kid": reasons["unknown kid"],
        "tampered signature": "bad_signature",
    }
    assert reasons["alg none"] in {"algorithm_not_allowed", "malformed"}
    assert reasons["unknown kid"] in {"unknown_key", "bad_signature"}

    # API keys: revoked, expired, wrong secret (constant-time path), then a working one
    live, live_record = await pipeline.keys.create("ci-bot", ["agent"])
    revoked, revoked_record = await pipeline.keys.create("old-bot", ["agent"])
    await pipeline.keys.revoke(revoked_record.id)
    expired, expired_record = await pipeline.keys.create("temp-bot", ["agent"], ttl_s=1)
    wrong = live[:-6] + ("AAAAAA" if not live.endswith("AAAAAA") else "BBBBBB")
    assert expired_record.expires is not None
    while time.time() <= expired_record.expires:  # its 1 s life runs out on the wall clock (bounded by ttl_s)
        await asyncio.sleep(0.05)
    assert await pipeline.refused_login(Credentials(api_key=revoked, peer="10.0.1.1")) == "revoked"
    assert await pipeline.refused_login(Credentials(api_key=expired, peer="10.0.1.2")) == "expired"
    assert await pipeline.refused_login(Credentials(api_key=wrong, peer="10.0.1.3")) == "bad_signature"

    # lockout: 3 failures from one address for one claimed identity lock it, even for the right key
    for _ in range(3):
        await pipeline.refused_login(Credentials(api_key=wrong, peer="10.0.2.1"))
    assert await pipeline.refused_login(Credentials(api_key=live, peer="10.0.2.1")) == "locked_out"

    # a good login, then refused calls: denied tool, denied namespace, oversize, over-deep, rate limit
    agent = await pipeline.login(Credentials(api_key=live, peer="10.0.3.1"))
    assert agent.subject == "ci-bot" and agent.key_id == live_record.id
    developer = await pipeline.login(Credentials(bearer=good, peer="10.0.3.2"))
    assert await pipeline.call(developer, "channels_send", {"channel": "general", "message": BODY}) == "ok"
    deep: Any = "x"
    for _ in range(12):
        deep = [deep]
    for tool, args, namespace, code in [
        ("dlq_discard", {"itemId": "x"}, "team-s", "forbidden"),
        ("channels_list", {}, "team-other", "forbidden"),
        ("channels_send", {"channel": "general", "message": "x" * 5000}, "team-s", "limit_exceeded"),
        ("messages_send_direct", {"metadata": {"k": deep}}, "team-s", "limit_exceeded"),
    ]:
        with pytest.raises(Refused) as info:
            await pipeline.call(agent, tool, args, namespace)
        assert info.value.code == code
    with pytest.raises(Refused) as info:
        for _ in range(10):
            await pipeline.call(agent, "channels_list", {})
    assert info.value.code == "rate_limited"

    # every refusal was audited, the chain verifies, and nothing secret was kept anywhere
    records = await pipeline.stored()
    kinds = [json.loads(r)["kind"] for r in records]
    assert kinds.count("auth_failure") >= len(attacks) + 3 + 3
    assert {"locked_out", "denied", "limit_exceeded", "rate_limited", "tool_call"} <= set(kinds)
    result = await verify_stream(pipeline.conn, allow_expired_head=True)
    assert result is not None and result.ok, result
    stored = b"\n".join(records).decode() + (tmp_path / "audit.jsonl").read_text()
    secrets = [good, live, revoked, expired, wrong, BODY, *attacks.values()]
    secrets += [live.split("_")[-1]]
    for secret in secrets:
        assert secret not in stored
        assert secret not in caplog.text
