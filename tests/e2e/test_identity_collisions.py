"""Identities that must never collide (issue 19 #3, #4, #5), attacked over real serve processes: a client certificate
whose DNS SAN spells a victim's SPIFFE ID (gRPC, mTLS), and introspection answers for another API, for a client named
like a user, or claiming ``iss: apikey`` (HTTP, a real local authorization server). Each is refused or stays its own
principal, and the refusals are audited without any credential."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import grpc

from tests.support.audit import audit_records
from tests.support.grpc_server import INIT, TRUST_DOMAIN, Pki, frame, session_status, target
from tests.support.grpc_server import policy_file as grpc_policy_file
from tests.support.grpc_server import serving as grpc_serving
from tests.support.http_server import api_key, http_client, mcp_client, post_init
from tests.support.http_server import serving as http_serving
from tests.support.introspection import CLIENT_ID, CLIENT_SECRET, AuthServer
from tests.support.natsserver import NatsServer, wait_for
from tests.support.stdio import err, ok

POLICY = """
version: 1
roles:
  agent: {tools: ["*"], namespaces: ["*"], channels: {read: ["*"], send: ["*"]}}
  client: {tools: ["handle_*"], namespaces: ["*"]}
principals:
  - {issuer: apikey, subject: deployer, roles: [agent]}
  - {method: introspection, subject: alice, roles: [agent]}
  - {method: introspection, subject: "client:*", roles: [client]}
"""


# ---- 3. mTLS: a DNS SAN spelling the victim's SPIFFE ID -------------------------------------------------------------


async def test_a_dns_san_spelling_a_spiffe_id_is_not_that_agent(tmp_path: Path, nats_server: NatsServer) -> None:
    pki = Pki.create(tmp_path / "pki")
    trail = tmp_path / "audit.jsonl"
    victim_id = f"{TRUST_DOMAIN}/agent/alice"
    victim = pki.client("alice")
    impostor = pki.issue("impostor", dns=[victim_id])  # signed by the same CA, the victim's ID as a DNS name
    env = {
        "NATS_MCP_NAMESPACE": "team-collide",
        "NATS_MCP_SECURITY_POLICY_FILE": grpc_policy_file(tmp_path),
        "NATS_MCP_SECURITY_AUDIT_FILE": str(trail),
        "GRPC_VERBOSITY": "NONE",
    }
    async with grpc_serving(
        tmp_path, "collide", nats_server.url, pki.server(), "--client-ca", str(pki.ca_file), **env
    ) as srv:
        init = frame(INIT)
        assert (await session_status(target(srv, victim), init))[0] == grpc.StatusCode.OK
        code, details, received, _ = await session_status(target(srv, impostor), init)
        assert (code, received) == (grpc.StatusCode.PERMISSION_DENIED, []), details
        assert f"dns:{victim_id}" in details
        await wait_for(
            lambda: trail.exists() and f'"dns:{victim_id}"' in trail.read_text(),
            15,
            message="the refusal was not audited",
        )
    denied = [r for r in audit_records(trail) if r["kind"] == "denied"]
    assert [(r["reason"], r["principal"]["subject"]) for r in denied] == [("agent_denied", f"dns:{victim_id}")]
    assert denied[0]["principal"].get("issuer", "mtls-dns") == "mtls-dns"


# ---- 4, 5. introspection: audience, subject kinds, issuers ----------------------------------------------------------


async def test_introspected_tokens_stay_in_their_own_namespace_and_audience(
    tmp_path: Path,
    nats_server: NatsServer,
    auth_server: AuthServer,
) -> None:
    trail = tmp_path / "audit.jsonl"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    deployer, _ = await api_key(tmp_path, nats_server.url, "deployer", "agent")
    env = {
        "NATS_MCP_NAMESPACE": "team-intro",
        "NATS_MCP_SECURITY_POLICY_FILE": str(policy),
        "NATS_MCP_SECURITY_AUDIT_FILE": str(trail),
        "NATS_MCP_SECURITY_INTROSPECTION_URL": auth_server.url,
        "NATS_MCP_SECURITY_INTROSPECTION_CLIENT_ID": CLIENT_ID,
        "NATS_MCP_SECURITY_INTROSPECTION_CLIENT_SECRET": CLIENT_SECRET,
    }
    tokens = {
        name: f"opaque-{name}-{secrets.token_urlsafe(24)}"
        for name in ("user", "client", "as-apikey", "other-api", "no-aud")
    }
    async with http_serving(tmp_path, "intro", nats_server.url, **env) as server:
        here = {"active": True, "iss": "https://as.example.test", "aud": server.url}
        auth_server.answers.update(
            {
                tokens["user"]: {**here, "sub": "alice", "scope": "mcp"},
                tokens["client"]: {**here, "client_id": "alice"},  # a client-credentials token of a client "alice"
                tokens["as-apikey"]: {**here, "sub": "deployer", "iss": "apikey"},  # claims to be the API key
                tokens["other-api"]: {**here, "sub": "alice", "aud": "https://billing.example.test/api"},
                tokens["no-aud"]: {"active": True, "iss": "https://as.example.test", "sub": "alice"},
            }
        )
        # 4: a token the authorization server issued for another API (or for no one) is not accepted here
        async with http_client() as hc:
            for name in ("other-api", "no-aud"):
                refused = await post_init(hc, server.url, tokens[name])
                assert refused.status_code == 401, name
                assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        # 5: the user "alice", the client "alice" and the API key "deployer" are three agents, whatever the answers say
        async with mcp_client(server.url, tokens["user"]) as user:
            user_guid = (await ok(user, "warp_handle_get"))["agentGuid"]
            await ok(user, "warp_channels_list")
        async with mcp_client(server.url, tokens["client"]) as client:
            assert (await ok(client, "warp_handle_get"))["agentGuid"] != user_guid
            assert await err(client, "warp_channels_list") == "forbidden"  # not the user alice's role
        async with mcp_client(server.url, deployer) as key:
            key_guid = (await ok(key, "warp_handle_get"))["agentGuid"]
        async with mcp_client(server.url, tokens["as-apikey"]) as impostor:
            assert await err(impostor, "warp_handle_get") == "forbidden"  # none of the API key's roles
        await wait_for(
            lambda: trail.exists() and trail.read_text().count('"denied"') >= 2,
            15,
            message="the refusals were not audited",
        )
    assert key_guid != user_guid
    text = trail.read_text()
    for secret in (*tokens.values(), deployer, CLIENT_SECRET):
        assert secret not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["reason"] for r in records if r["kind"] == "auth_failure"] == ["bad_audience", "bad_audience"]
    denied = {
        (r["tool"], r["principal"]["subject"], r["principal"].get("issuer")) for r in records if r["kind"] == "denied"
    }
    assert ("channels_list", "client:alice", "introspection:https://as.example.test") in denied, denied
    assert ("handle_get", "deployer", "introspection:apikey") in denied, denied
