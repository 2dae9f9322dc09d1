"""Boundary of the gRPC transport as clients meet it: real serve and bridge processes, mTLS, nats-server, the SDK."""

from __future__ import annotations

import asyncio
import datetime
import json
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mcp import Client

from nats_mcp.transports.grpc.client import GrpcTarget, grpc_transport, open_channel
from nats_mcp.transports.grpc.gen.transport_pb2 import Frame
from tests.support.audit import audit_records
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.grpc_server import (
    INIT,
    TRUST_DOMAIN,
    Pki,
    bridged,
    call_status,
    frame,
    modern,
    policy_file,
    serving,
    session_status,
    target,
)
from tests.support.keys import signed
from tests.support.natsserver import NatsServer, _pdeathsig_preexec, wait_for
from tests.support.stdio import TOOLS, err, ok
from tests.support.work_tools import broadcast, claim, queues, register

CAP = "python"


# ---- certificates: a CA, a server, SPIFFE clients (and expired ones) ------------------------------------------------


# ---- harness: serve --transport grpc processes, bridges, raw calls ---------------------------------------------------


# ---- 1. SDK client -> bridge (stdio) -> gRPC mTLS -> server -> NATS: coordination and work, both revisions ---------


@pytest.mark.slow
async def test_bridge_runs_coordination_and_work_over_mutual_tls(tmp_path: Path, nats_server: NatsServer) -> None:
    pki = Pki.create(tmp_path / "pki")
    alice, bob = pki.client("alice"), pki.client("bob")
    env = {"NATS_MCP_NAMESPACE": "team-grpc", "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    async with serving(tmp_path, "grpc", nats_server.url, pki.server(), "--client-ca", str(pki.ca_file), **env) as srv:
        async with bridged(tmp_path, srv, alice) as a, bridged(tmp_path, srv, bob, mode="legacy") as b:
            assert (a.protocol_version, b.protocol_version) == ("2026-07-28", "2025-11-25")
            assert {t.name for t in (await a.list_tools()).tools} == TOOLS
            await ok(a, "warp_handle_set", handle="alice")
            guid_a = await register(a, CAP, "review")
            guid_b = await register(b, CAP)
            assert guid_a != guid_b
            seen = {x["guid"] for x in (await ok(b, "warp_registry_discover"))["agents"]}
            assert seen == {guid_a, guid_b}

            # channels: the sender is the server's to say
            await ok(a, "warp_channels_send", channel="roadmap", message="ship the gRPC transport")
            page = await ok(b, "warp_channels_read", channel="roadmap")
            assert [(m["message"], m["senderGuid"], m["handle"]) for m in page["messages"]] == [
                ("ship the gRPC transport", guid_a, "alice")
            ]

            # direct messages: only the recipient reads them, once
            await ok(a, "warp_messages_send_direct", recipientGuid=guid_b, message="hello bob")
            assert (await ok(a, "warp_messages_read_direct"))["messages"] == []
            first = (await ok(b, "warp_messages_read_direct"))["messages"]
            assert [(m["content"], m["senderGuid"]) for m in first] == [("hello bob", guid_a)]

            # work: broadcast, claim, complete exactly once; only the claimer settles it
            item_id = await broadcast(a, "review-1", priority=8)
            item = await claim(b, timeout=2000)
            assert item is not None and (item["id"], item["offeredBy"]) == (item_id, guid_a)
            assert await err(a, "warp_work_complete", workItemId=item_id) == "forbidden"
            assert (await ok(b, "warp_work_complete", workItemId=item_id))["status"] == "completed"
            assert await err(b, "warp_work_complete", workItemId=item_id) == "conflict"
            assert await queues(a, CAP) == {CAP: (0, 0, 0)}

        # the Python client straight over gRPC: the same principal is the same agent again
        async with Client(grpc_transport(target(srv, alice)), mode="legacy") as again:  # type: ignore[arg-type]
            assert (await ok(again, "warp_handle_get"))["agentGuid"] == guid_a

        # health follows NATS connectivity
        channel = open_channel(target(srv, alice))
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            answer = await stub.Check(health_pb2.HealthCheckRequest(service="nats_mcp.v1.McpTransport"))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await channel.close()


# ---- 2. the attack matrix over mTLS: statuses and the audit trail ----------------------------------------------------


@pytest.mark.slow
async def test_mtls_refusals_have_the_right_status_and_are_audited(tmp_path: Path, nats_server: NatsServer) -> None:
    pki = Pki.create(tmp_path / "pki")
    other = Pki.create(tmp_path / "other", "other-ca")
    trail = tmp_path / "audit.jsonl"
    alice = pki.client("alice")
    stranger = pki.issue("stranger", uris=["spiffe://elsewhere.test/agent/stranger"])  # the CA's, unknown to policy
    expired = pki.issue(
        "old",
        uris=[f"{TRUST_DOMAIN}/agent/old"],
        valid_from=datetime.timedelta(days=-3),
        valid_for=datetime.timedelta(days=1),
    )
    foreign = other.client("alice")  # the right name from the wrong CA
    env = {
        "NATS_MCP_NAMESPACE": "team-attack",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_SECURITY_AUDIT_FILE": str(trail),
        "NATS_MCP_GRPC_MAX_MESSAGE_BYTES": "4096",
        "GRPC_VERBOSITY": "NONE",
    }
    async with serving(tmp_path, "grpc", nats_server.url, pki.server(), "--client-ca", str(pki.ca_file), **env) as srv:
        init = frame(INIT)
        # handshake refusals: the gRPC core closes the connection before any call exists (no status of ours)
        for leaf in (None, foreign, expired):
            code, _, received, _ = await session_status(target(srv, leaf), init)
            assert (code, received) == (grpc.StatusCode.UNAVAILABLE, []), leaf

        # a certificate of our CA whose identity the policy does not know
        code, details, received, _ = await session_status(target(srv, stranger), init)
        assert (code, received) == (grpc.StatusCode.PERMISSION_DENIED, [])
        assert "spiffe://elsewhere.test/agent/stranger" in details

        # a good identity: an oversize frame, a frame that is not JSON-RPC
        code, _, _, _ = await session_status(target(srv, alice), init, Frame(json=b'{"pad":"' + b"x" * 5000 + b'"}'))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        code, _, _, _ = await session_status(target(srv, alice), Frame(json=b"not json"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT

        # Call: metadata must agree with the body
        listing = frame(modern("tools/list"))
        code, _, received = await call_status(target(srv, alice), listing, [("mcp-method", "tools/list")])
        assert code == grpc.StatusCode.OK
        [answer] = [json.loads(r) for r in received]
        assert answer["id"] == 7 and {t["name"] for t in answer["result"]["tools"]} == TOOLS
        call = frame(modern("tools/call", {"name": "warp_handle_get", "arguments": {}}))
        mismatches = (
            [("mcp-method", "tools/list")],
            [("mcp-name", "warp_work_claim")],
            [("mcp-tool-name", "warp_dlq_discard")],
            [("mcp-protocol-version", "2025-11-25")],
        )
        for metadata in mismatches:
            code, details, received = await call_status(target(srv, alice), call, metadata)
            assert (code, received) == (grpc.StatusCode.INVALID_ARGUMENT, []), metadata
            assert "disagrees with the body" in details
        code, _, received = await call_status(
            target(srv, alice), call, [("mcp-method", "tools/call"), ("mcp-name", "warp_handle_get")]
        )
        assert code == grpc.StatusCode.OK
        assert json.loads(received[-1])["result"]["isError"] is False
        await wait_for(lambda: '"handle_get"' in trail.read_text(), 15, message="the last call was not audited")

    records = audit_records(trail)
    assert records and all(r["transport"] == "grpc" for r in records)
    refusals = {(r["kind"], r["reason"], (r["principal"] or {}).get("subject")) for r in records}
    alice_id = f"{TRUST_DOMAIN}/agent/alice"
    assert ("denied", "agent_denied", "spiffe://elsewhere.test/agent/stranger") in refusals, refusals
    assert ("limit_exceeded", "frame_too_large", alice_id) in refusals, refusals
    assert ("denied", "not_jsonrpc", alice_id) in refusals, refusals
    assert sum(1 for r in records if r["reason"] == "header_mismatch") == 4
    assert any(r["kind"] == "tool_call" and r["tool"] == "handle_get" and r["outcome"] == "ok" for r in records)


# ---- 3. bearer tokens where the policy allows them instead of client certificates -----------------------------------


async def test_bearer_tokens_missing_expired_or_for_another_audience_are_unauthenticated(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    pki = Pki.create(tmp_path / "pki")
    trail = tmp_path / "audit.jsonl"
    env = {
        "NATS_MCP_NAMESPACE": "team-bearer",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_SECURITY_AUDIT_FILE": str(trail),
        "NATS_MCP_SECURITY_DEV_TOKENS": "true",
        "NATS_MCP_GRPC_REQUIRE_CLIENT_CERT": "false",
    }
    async with serving(tmp_path, "grpc", nats_server.url, pki.server(), **env) as srv:
        audience = f"grpcs://127.0.0.1:{srv.port}"
        good = signed(tmp_path, "carol", audience, roles=("agent",))
        stale = signed(tmp_path, "carol", audience, roles=("agent",), issued=time.time() - 7200, ttl_s=600)
        elsewhere = signed(tmp_path, "carol", "grpcs://elsewhere.test:443", roles=("agent",))
        init = frame(INIT)

        code, _, _, trailers = await session_status(target(srv, None), init)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert trailers.get("www-authenticate") == 'Bearer realm="nats-mcp"'
        for token in (stale, elsewhere, "not-a-token"):
            code, details, received, trailers = await session_status(target(srv, None, token), init)
            assert (code, received) == (grpc.StatusCode.UNAUTHENTICATED, []), (token, details)
            assert details == "authentication failed"
            assert trailers.get("www-authenticate") == 'Bearer realm="nats-mcp", error="invalid_token"'

        async with Client(grpc_transport(target(srv, None, good))) as carol:  # type: ignore[arg-type]
            await register(carol, CAP)
        await wait_for(lambda: '"registry_register"' in trail.read_text(), 15, message="the call was not audited")

    text = trail.read_text()
    for secret in (good, stale, elsewhere):
        assert secret not in text
    failures = [r["reason"] for r in audit_records(trail) if r["kind"] == "auth_failure"]
    for reason in ("missing_credentials", "expired", "bad_audience", "malformed"):
        assert reason in failures, failures


# ---- 4. start refusals -----------------------------------------------------------------------------------------------


NO_TOKENS = {"NATS_MCP_GRPC_REQUIRE_CLIENT_CERT": "false", "NATS_MCP_SECURITY_API_KEYS": "false"}


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ((), {}, "gRPC needs TLS"),
        (("--tls-cert", "CERT", "--tls-key", "KEY"), {}, "set grpc.client_ca_file (--client-ca)"),
        (("--tls-cert", "CERT", "--tls-key", "KEY"), NO_TOKENS, "needs JWTs or API keys"),
        (("--insecure-dev", "--host", "0.0.0.0"), {}, "loopback only"),  # noqa: S104
    ],
)
async def test_serve_grpc_refuses_to_start_insecurely(
    tmp_path: Path, nats_server: NatsServer, args: tuple[str, ...], env: dict[str, str], needle: str
) -> None:
    server = Pki.create(tmp_path / "pki").server()
    argv = [str(server.cert_file) if a == "CERT" else str(server.key_file) if a == "KEY" else a for a in args]
    proc = await asyncio.create_subprocess_exec(
        nats_mcp_exe(),
        "serve",
        "--transport",
        "grpc",
        "--port",
        "0",
        *argv,
        env=isolated_env(tmp_path, NATS_URL=nats_server.url, **env),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, error = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, error.decode()
    assert needle in " ".join(error.decode().split())


async def test_insecure_dev_serves_plaintext_on_loopback_and_stops_cleanly(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    trail = tmp_path / "audit.jsonl"
    port_file = tmp_path / "dev.port"
    env = isolated_env(
        tmp_path,
        NATS_URL=nats_server.url,
        NATS_MCP_GRPC_PORT_FILE=str(port_file),
        NATS_MCP_NAMESPACE="team-dev",
        NATS_MCP_SECURITY_AUDIT_FILE=str(trail),
    )
    proc = await asyncio.create_subprocess_exec(
        nats_mcp_exe(),
        "serve",
        "--transport",
        "grpc",
        "--port",
        "0",
        "--insecure-dev",
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_pdeathsig_preexec(),
    )
    try:
        port = await wait_for(
            lambda: port_file.exists() and port_file.read_text().endswith("\n") and int(port_file.read_text()),
            60,
            message="no port file",
        )
        dev = GrpcTarget(f"127.0.0.1:{port}", plaintext=True, agent="dev-1")
        async with Client(grpc_transport(dev)) as client:  # type: ignore[arg-type]
            guid = await register(client, CAP)
        async with Client(grpc_transport(dev), mode="legacy") as client:  # type: ignore[arg-type]
            assert (await ok(client, "warp_handle_get"))["agentGuid"] == guid  # same agent header, same agent
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, error = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, error.decode()[-2000:]
    assert "INSECURE DEV MODE" in error.decode()
    records = audit_records(trail)
    assert any(r["kind"] == "tool_call" and r["tool"] == "registry_register" for r in records)
