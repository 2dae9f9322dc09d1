"""Boundary of HTTP authentication as clients meet it: real serve processes, tokens, statuses, and the audit trail."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from pathlib import Path

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nats_mcp.security.authn.apikeys import ApiKeys
from tests.support.env import connected
from tests.support.http_server import (
    INIT,
    MCP_HEADERS,
    api_key,
    dev_jwt,
    guid,
    http_client,
    launch,
    mcp_client,
    metadata_url,
    policy_file,
    post_init,
    run_cli,
    serving,
)
from tests.support.keys import signed
from tests.support.natsserver import NatsServer, wait_for
from tests.support.stdio import TOOLS, err, ok
from tests.support.work_tools import register

# ---- every refusal with its status, then the audit trail -------------------------------------------------------------


@pytest.mark.slow
async def test_authentication_failures_answer_401_403_413_and_are_audited(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    trail = tmp_path / "audit.jsonl"
    env = {
        "NATS_MCP_NAMESPACE": "team-auth",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_SECURITY_DEV_TOKENS": "true",
        "NATS_MCP_SECURITY_AUDIT_FILE": str(trail),
        "NATS_MCP_SECURITY_LOCKOUT_MAX_FAILURES": "8",
        "NATS_MCP_SECURITY_LOCKOUT_BASE_S": "120",
        "NATS_MCP_HTTP_MAX_BODY_BYTES": "4096",
    }
    url = nats_server.url
    good, _ = await api_key(tmp_path, url, "good", "agent")
    reader, _ = await api_key(tmp_path, url, "reader", "reader")
    victim, victim_id = await api_key(tmp_path, url, "victim", "agent")
    doomed, doomed_id = await api_key(tmp_path, url, "doomed", "agent")
    server = await launch(tmp_path, "auth", url, **env)
    used: list[str] = [good, reader, victim, doomed]
    try:
        base = server.base
        async with http_client() as hc:
            # no token: 401 pointing at the protected-resource metadata, which is served
            for request in (hc.post(server.url, json=INIT, headers=MCP_HEADERS), hc.get(server.url)):
                refused = await request
                assert refused.status_code == 401
                challenge = refused.headers["www-authenticate"]
                assert challenge.startswith("Bearer ")
                assert f'resource_metadata="{metadata_url(base)}"' in challenge
            meta = await hc.get(metadata_url(base))
            assert meta.status_code == 200
            doc = meta.json()
            assert doc["resource"] == server.url
            # API keys and dev tokens come from no authorization server: none is named
            assert "authorization_servers" not in doc and doc["bearer_methods_supported"] == ["header"]
            assert (await post_init(hc, server.url, "not-a-jwt-nor-a-key")).status_code == 401
            assert (await post_init(hc, server.url, "Basic-ish")).status_code == 401

            # dev JWTs: expired, for another audience, made by another key -> 401; a good one -> 200
            expired = signed(tmp_path, "old-timer", server.url, issued=time.time() - 7200, ttl_s=600, roles=("agent",))
            elsewhere = await dev_jwt(tmp_path, "tourist", "agent", audience="https://elsewhere.example/mcp")
            fine_jwt = await dev_jwt(tmp_path, "local-dev", "agent", audience=server.url)
            header, _, _ = fine_jwt.partition(".")
            forged = f"{header}.{fine_jwt.split('.')[1]}.{'A' * 86}"
            used += [expired, elsewhere, fine_jwt, forged]
            for token in (expired, elsewhere, forged):
                refused = await post_init(hc, server.url, token)
                assert refused.status_code == 401, token
                assert 'error="invalid_token"' in refused.headers["www-authenticate"]
            assert (await post_init(hc, server.url, fine_jwt)).status_code == 200

            # API keys: unknown, wrong secret, revoked -> 401
            unknown = f"nmk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
            wrong_secret = f"nmk_{doomed_id}_{secrets.token_urlsafe(32)}"
            used += [unknown, wrong_secret]
            assert (await post_init(hc, server.url, doomed)).status_code == 200
            for token in (unknown, wrong_secret):
                assert (await post_init(hc, server.url, token)).status_code == 401
            async with connected(tmp_path, url) as conn:
                await ApiKeys(conn).revoke(doomed_id)

            async def doomed_refused() -> bool:  # the server process learns it from its watch of the keys bucket
                return (await post_init(hc, server.url, doomed)).status_code == 401

            await wait_for(doomed_refused, 10, message="the revoked key still gets in")

            assert (await post_init(hc, server.url, victim)).status_code == 200
        # lockout (issue 19 #6): failures count per sender address, never per claimed identity. From a shared
        # address (a NAT), 8 wrong secrets for the victim's key id lock that address: the next guess is refused
        # before any scrypt, but the victim's key, which verified, still gets in there and elsewhere.
        # (Before issue 19 the victim's right key was refused from the guesses' address: the claim was the lock.)
        guesses = [f"nmk_{victim_id}_{secrets.token_urlsafe(32)}" for _ in range(9)]
        used += guesses
        shared_address = httpx2.AsyncHTTPTransport(local_address="127.0.0.3")
        async with http_client(transport=shared_address) as shared:
            for guess in guesses[:8]:
                assert (await post_init(shared, server.url, guess)).status_code == 401
            assert (await post_init(shared, server.url, guesses[8])).status_code == 401  # locked_out, unchecked
            assert (await post_init(shared, server.url, victim)).status_code == 200
        other_address = httpx2.AsyncHTTPTransport(local_address="127.0.0.2")
        async with http_client(transport=other_address) as elsewhere_hc:  # nor is the key from another address
            assert (await post_init(elsewhere_hc, server.url, victim)).status_code == 200

        async with http_client() as hc:
            # transport checks after authentication: Origin (403), Host (421), body size (413)
            assert (await post_init(hc, server.url, good, origin="http://evil.example")).status_code == 403
            assert (await post_init(hc, server.url, good, origin=f"http://127.0.0.1:{server.port}")).status_code == 200
            assert (await post_init(hc, server.url, good, host="evil.example")).status_code == 421
            big = json.dumps(dict(INIT, params=dict(INIT["params"], clientInfo={"name": "x" * 8000, "version": "1"})))
            too_big = await hc.post(server.url, content=big, headers=dict(MCP_HEADERS, authorization=f"Bearer {good}"))
            assert too_big.status_code == 413

        # the policy: a reader sees and may call only what its role grants, and only as its default agent
        async with mcp_client(server.url, reader, mode="legacy") as r:
            visible = {t.name for t in (await r.list_tools()).tools}
            assert "warp_channels_read" in visible and "warp_work_broadcast" not in visible
            assert visible < TOOLS
            assert await err(r, "warp_work_broadcast", taskId="t", description="d", requiredCapability="x") == (
                "forbidden"
            )
            assert await err(r, "warp_channels_send", channel="roadmap", message="x") == "forbidden"
            await ok(r, "warp_channels_read", channel="roadmap")
        async with mcp_client(server.url, reader, agent="someone-else") as r:
            assert await err(r, "warp_handle_get") == "forbidden"
        async with mcp_client(server.url, fine_jwt) as j:  # dev JWT roles are groups; the policy maps them
            await register(j, "python")
        # every record is in the file before the stop (a clean stop closing the chain is tested on its own below)
        await wait_for(lambda: '"registry_register"' in trail.read_text(), 15, message="the last call was not audited")
    finally:
        code = await server.stop(signal.SIGINT)
    assert code == 0, server.stderr()[-3000:]

    # the audit trail: every refusal, over http, never a credential
    text = trail.read_text()
    for secret in used:
        assert secret not in text
        # nor its secret part: an API key's after ``nmk_<id>_`` (which may itself hold "_"), a JWT's signature
        tail = secret.split("_", 2)[2] if secret.startswith("nmk_") else secret.rsplit(".", 1)[-1]
        assert len(tail) >= 16 and tail not in text, tail
    records = [json.loads(line) for line in text.splitlines()]
    assert records and all(r["transport"] == "http" for r in records)
    failures = [r for r in records if r["kind"] == "auth_failure"]
    assert all(
        r["principal"] is None and r["peer"] in ("127.0.0.1", "127.0.0.3") and r["outcome"] == "unauthenticated"
        for r in failures
    )
    reasons = [r["reason"] for r in failures]
    for reason in ("expired", "bad_audience", "bad_signature", "revoked", "malformed"):
        assert reason in reasons, reasons
    assert reasons.count("bad_signature+locked") == 1, reasons
    locked = [r for r in records if r["kind"] == "locked_out"]
    assert [(r["peer"], r["outcome"], r["reason"]) for r in locked] == [("127.0.0.3", "forbidden", "locked_out")]
    denied = [
        (r["tool"], r["reason"], r["principal"]["subject"]) for r in records if r["kind"] == "denied" and r["principal"]
    ]
    # refusals the SDK answers before a token is looked at are audited too, without a principal
    http_level = {(r["kind"], r["reason"]) for r in records if r["principal"] is None and r["kind"] != "auth_failure"}
    http_level |= {(r["kind"], r["reason"]) for r in failures if r["reason"] == "missing_credentials"}
    assert {
        ("auth_failure", "missing_credentials"),
        ("denied", "http_forbidden"),
        ("denied", "host_not_allowed"),
        ("limit_exceeded", "body_too_large"),
    } <= http_level, http_level
    assert ("work_broadcast", "policy_denied", "reader") in denied
    assert ("channels_send", "policy_denied", "reader") in denied
    calls = [(r["tool"], r["outcome"], r["principal"]["subject"]) for r in records if r["kind"] == "tool_call"]
    assert ("handle_get", "forbidden", "reader") in calls  # an agent name the policy does not give it
    assert ("registry_register", "ok", "local-dev") in calls
    code, out, error = await run_cli(tmp_path, "audit", "verify", "--file", str(trail), NATS_URL=url)
    assert code == 0, out + error
    assert "verified" in out


# ---- required scopes: 403 insufficient_scope, and a token with the scope gets in -------------------------------------


async def test_required_scope_403_insufficient_scope(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {
        "NATS_MCP_NAMESPACE": "team-scope",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_SECURITY_DEV_TOKENS": "true",
        "NATS_MCP_HTTP_REQUIRED_SCOPES": '["mcp:agent"]',
    }
    key, _ = await api_key(tmp_path, nats_server.url, "keyholder", "agent")
    async with serving(tmp_path, "scoped", nats_server.url, **env) as server:
        scoped = signed(tmp_path, "scoped-dev", server.url, scope="openid mcp:agent")
        unscoped = signed(tmp_path, "plain-dev", server.url, scope="openid", roles=("agent",))
        async with http_client() as hc:
            meta = (await hc.get(metadata_url(server.base))).json()
            assert meta["resource"] == server.url and meta["scopes_supported"] == ["mcp:agent"]
            for token in (key, unscoped):  # valid credentials, without the scope (API keys carry none)
                refused = await post_init(hc, server.url, token)
                assert refused.status_code == 403
                challenge = refused.headers["www-authenticate"]
                assert 'error="insufficient_scope"' in challenge and "mcp:agent" in challenge
                assert f'resource_metadata="{metadata_url(server.base)}"' in challenge
            assert (await post_init(hc, server.url, None)).status_code == 401
            assert (await post_init(hc, server.url, scoped)).status_code == 200
        async with mcp_client(server.url, scoped) as client:  # roles from the scope, through the policy
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            assert len(await guid(client)) == 32
            await register(client, "python")


# ---- a clean stop: Ctrl-C and SIGTERM close the audit chain and exit 0 -----------------------------------------------


async def test_ctrl_c_and_sigterm_stop_cleanly_and_close_the_audit_chain(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    key, _ = await api_key(tmp_path, nats_server.url, "stopper")
    sigs = (signal.SIGINT, signal.SIGTERM)
    trails = {sig: tmp_path / f"audit-{sig.name}.jsonl" for sig in sigs}
    servers = await asyncio.gather(
        *(
            launch(
                tmp_path,
                sig.name,
                nats_server.url,
                NATS_MCP_NAMESPACE="team-stop",
                NATS_MCP_SECURITY_AUDIT_FILE=str(trails[sig]),
            )
            for sig in sigs
        )
    )
    try:
        for server in servers:
            async with mcp_client(server.url, key) as client:
                await ok(client, "warp_handle_get")
    finally:
        codes = await asyncio.gather(*(server.stop(sig) for server, sig in zip(servers, sigs, strict=True)))
    problems = []
    for server, sig, code in zip(servers, sigs, codes, strict=True):
        kinds = [json.loads(line)["kind"] for line in trails[sig].read_text().splitlines()]
        if code != 0 or kinds != ["tool_call", "chain_end"]:
            problems.append(f"{sig.name}: exit {code}, audit records {kinds}\n{server.stderr()[-1500:]}")
    assert not problems, "a stop signal skipped the clean shutdown:\n" + "\n".join(problems)


# ---- what a 401 says, and which authorization servers the metadata names ---------------------------------------------


def _description(refused: httpx2.Response) -> str:
    """The 401's error_description, checked to be the same in WWW-Authenticate and in the body."""
    assert refused.status_code == 401, refused.text
    described: str = refused.json()["error_description"]
    assert f'error="invalid_token", error_description="{described}"' in refused.headers["www-authenticate"]
    return described


@pytest.mark.slow
async def test_a_401_says_what_is_wrong_and_names_only_real_authorization_servers(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    url = nats_server.url
    revoked, revoked_id = await api_key(tmp_path, url, "revoked", "agent")
    async with connected(tmp_path, url) as conn:  # made an hour ago for a minute: expired
        expired, _ = await ApiKeys(conn, clock=lambda: time.time() - 3600).create("expired", ["agent"], ttl_s=60)
        await ApiKeys(conn).revoke(revoked_id)
    unknown = f"nmk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    cases = [
        (None, "no credentials: send Authorization: Bearer with an API key"),
        (unknown, "unknown API key"),
        ("nmk_not-a-key", "malformed API key"),
        (revoked, "revoked API key"),
        (expired, "expired API key"),
    ]
    async with serving(tmp_path, "keys-only", url, NATS_MCP_NAMESPACE="team-401") as server, http_client() as hc:
        for token, words in cases:
            described = _description(await post_init(hc, server.url, token))
            assert described.startswith(words), (token, described)
            if token is not None:  # the secret (after nmk_<id>_; base64url, so it may hold "_") is never echoed
                secret = token.split("_", 2)[-1]
                assert secret not in described and secret[:16] not in described
        # API keys come from no authorization server: the metadata names none (and not the MCP endpoint) ...
        meta = (await hc.get(metadata_url(server.base))).json()
        assert meta == {"resource": server.url, "bearer_methods_supported": ["header"]}
        # ... and where an OAuth client then looks for one, it is told this server takes API keys
        for path in ("/register", "/token"):
            answer = await hc.post(server.base + path, json={"redirect_uris": ["http://127.0.0.1:1/cb"]})
            assert answer.status_code == 400 and answer.json()["error"] == "access_denied", answer.text
            assert "does not use OAuth: it takes an API key" in answer.json()["error_description"]

    # a trusted JWT issuer: the metadata names it, the fallbacks are not served, a refused token says why
    private = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    issuer = "https://idp.example.test/realms/agents"
    issuers = json.dumps(
        [
            {
                "issuer": issuer,
                "audience": "https://nats-mcp.example.test/mcp",
                "public_key_files": [str(pem)],
                "algorithms": ["ES256"],
            }
        ]
    )
    now = int(time.time())
    stale = jwt.encode(
        {
            "iss": issuer,
            "sub": "someone",
            "aud": "https://nats-mcp.example.test/mcp",
            "iat": now - 7200,
            "exp": now - 3600,
        },
        private,
        algorithm="ES256",
    )
    env = {"NATS_MCP_NAMESPACE": "team-401", "NATS_MCP_SECURITY_JWT_ISSUERS": issuers}
    async with serving(tmp_path, "issuer", url, **env) as server, http_client() as hc:
        meta = (await hc.get(metadata_url(server.base))).json()
        assert meta["authorization_servers"] == [issuer], meta
        assert (await hc.post(server.base + "/register", json={})).status_code == 404
        assert _description(await post_init(hc, server.url, stale)) == "expired token"
        assert _description(await post_init(hc, server.url)).startswith("no credentials")
