"""Boundary of the gRPC transport's guard as attackers and long-lived clients meet it: forged tokens, rate limits,
lockout, ``Listen`` streams and certificate rotation, over real serve processes, mTLS and nats-server."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import secrets
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mcp import Client

from nats_mcp.api.resources import channel_uri
from nats_mcp.api.tools.base import ERROR_META
from nats_mcp.security.dev import tokens as devtoken
from nats_mcp.transports.grpc.client import LISTEN_METHOD, grpc_transport, open_channel
from nats_mcp.transports.grpc.gen.transport_pb2 import Frame
from tests.support.audit import audit_records
from tests.support.grpc_server import (
    INIT,
    Leaf,
    Pki,
    call_full,
    call_status,
    frame,
    listening,
    next_frame,
    policy_file,
    serving,
    session_status,
    target,
    tool_call,
)
from tests.support.http_server import api_key
from tests.support.keys import dev_key, signed
from tests.support.natsserver import NatsServer, wait_for


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def confused_tokens(tmp_path: Path, audience: str) -> dict[str, str]:
    """Tokens whose claims are fine but whose algorithm is an attack: unsigned, and HMAC keyed with the public key."""
    key = dev_key(tmp_path)
    now = int(time.time())
    claims = {
        "iss": devtoken.DEV_ISSUER,
        "sub": "mallory",
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": secrets.token_hex(8),
        "dev": True,
        "roles": ["agent"],
    }
    body = _b64(json.dumps(claims).encode())
    unsigned = f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': key.kid}).encode())}.{body}."
    public = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    mac = hmac.new(public, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return {"none": unsigned, "hs256-with-public-key": f"{header}.{body}.{_b64(mac)}"}


# ---- forged tokens, rate limits and lockout ------------------------------------------------------------------------


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_forged_tokens_rate_limits_and_lockout_are_refused_with_their_status_and_audited(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    pki = Pki.create(tmp_path / "pki")
    trail = tmp_path / "audit.jsonl"
    env = {
        "NATS_MCP_NAMESPACE": "team-guard",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_SECURITY_AUDIT_FILE": str(trail),
        "NATS_MCP_SECURITY_DEV_TOKENS": "true",
        "NATS_MCP_GRPC_REQUIRE_CLIENT_CERT": "false",
        "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_RATE_PER_S": "0.01",
        "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_BURST": "3",
        "NATS_MCP_SECURITY_LOCKOUT_MAX_FAILURES": "5",
        "NATS_MCP_SECURITY_LOCKOUT_BASE_S": "120",
    }
    url = nats_server.url
    busy, _ = await api_key(tmp_path, url, "busy", "agent")
    chatty, _ = await api_key(tmp_path, url, "chatty", "agent")
    victim, victim_id = await api_key(tmp_path, url, "victim", "agent")
    bystander, _ = await api_key(tmp_path, url, "bystander", "agent")
    used = [busy, chatty, victim, bystander]
    async with serving(tmp_path, "guard", url, pki.server(), **env) as srv:
        audience = f"grpcs://127.0.0.1:{srv.port}"
        init = frame(INIT)

        # alg confusion: an unsigned token and one "signed" with HMAC keyed by the public key -> UNAUTHENTICATED
        forged = confused_tokens(tmp_path, audience)
        used += list(forged.values())
        for name, token in forged.items():
            code, details, received, trailers = await session_status(target(srv, None, token), init)
            assert (code, received) == (grpc.StatusCode.UNAUTHENTICATED, []), (name, details)
            assert trailers.get("www-authenticate") == 'Bearer realm="nats-mcp", error="invalid_token"'
        # the same claims properly signed pass: the refusals above were about the algorithm alone
        good = signed(tmp_path, "mallory", audience, roles=("agent",))
        used.append(good)
        code, _, received, _ = await session_status(target(srv, None, good), init)
        assert code == grpc.StatusCode.OK and len(received) == 1

        # rate limit: a burst of 3 calls, then RESOURCE_EXHAUSTED with retry-after (Call)
        for n in range(3):
            code, _, received, _ = await call_full(target(srv, None, busy), tool_call("warp_handle_get", n))
            assert code == grpc.StatusCode.OK and json.loads(received[-1])["result"]["isError"] is False
        code, details, received, trailers = await call_full(target(srv, None, busy), tool_call("warp_handle_get"))
        assert (code, received) == (grpc.StatusCode.RESOURCE_EXHAUSTED, []), details
        assert "too many calls" in details and int(trailers["retry-after"]) >= 1
        # ...and on a Session the refused request is that request's error; the session carries on
        async with Client(grpc_transport(target(srv, None, chatty)), mode="legacy") as client:  # type: ignore[arg-type]
            codes = []
            for _ in range(4):
                result = await client.call_tool("warp_handle_get", {})
                codes.append((result.meta or {}).get(ERROR_META, {}).get("code"))
            assert codes == [None, None, None, "rate_limited"]
            assert len((await client.list_tools()).tools) > 0

        # lockout (issue 19 #6): failures count per address, never per claimed identity. The two forged tokens above,
        # two JWTs naming the victim's issuer and subject but signed by the attacker, and one wrong secret for the
        # victim's key id make five from this (shared) address: it is locked, and the next guess is refused before
        # any verification. The victim's key and token, and the bystander's key, verified before: they still get in.
        # (Before issue 19 the victim's right key was refused here: the claimed key id was the lock's key.)
        victim_jwt = signed(tmp_path, "victim-jwt", audience, roles=("agent",))
        header, payload, _ = victim_jwt.split(".")
        impostors = [f"{header}.{payload}.{_b64(secrets.token_bytes(64))}" for _ in range(2)]
        guesses = [f"nmk_{victim_id}_{secrets.token_urlsafe(32)}" for _ in range(2)]
        used += [victim_jwt, *impostors, *guesses]
        for mine in (victim, victim_jwt, bystander):
            assert (await session_status(target(srv, None, mine), init))[0] == grpc.StatusCode.OK
        for forged_credential in (*impostors, *guesses):
            code, _, _, _ = await session_status(target(srv, None, forged_credential), init)
            assert code == grpc.StatusCode.UNAUTHENTICATED
        for mine in (victim, victim_jwt, bystander):
            assert (await session_status(target(srv, None, mine), init))[0] == grpc.StatusCode.OK
        await wait_for(lambda: '"locked_out"' in trail.read_text(), 15, message="the lockout was not audited")

    text = trail.read_text()
    for secret in used:
        assert secret not in text
    records = audit_records(trail)
    reasons = [(r["kind"], r["reason"]) for r in records if r["kind"] != "tool_call"]
    assert reasons.count(("auth_failure", "algorithm_not_allowed")) == 2, reasons
    assert sum(1 for kind, _ in reasons if kind == "rate_limited") == 2, reasons
    assert ("locked_out", "locked_out") in reasons, reasons
    assert ("auth_failure", "bad_signature+locked") in reasons, reasons


# ---- Listen: change notifications for subscriptions/listen ---------------------------------------------------------


def served_certificate(port: int, ca: Path, client: Leaf) -> x509.Certificate:
    """The certificate the server presents to a fresh TLS handshake (with our client certificate)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(client.cert_file), str(client.key_file))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def replace(path: Path, source: Path) -> None:
    """Swap a file's content at once (write aside, rename over), as a certificate manager does."""
    aside = path.with_suffix(".new")
    aside.write_bytes(source.read_bytes())
    os.replace(aside, path)


async def test_listen_streams_changes_and_rotated_certificates_are_served_without_restart(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    pki = Pki.create(tmp_path / "pki")
    alice = pki.client("alice")
    served = pki.server()
    # the server reads its certificate and client CA from these paths; the test rotates them in place
    live = tmp_path / "live"
    live.mkdir()
    cert, key, client_ca = live / "server.pem", live / "server-key.pem", live / "client-ca.pem"
    for dst, src in ((cert, served.cert_file), (key, served.key_file), (client_ca, pki.ca_file)):
        replace(dst, src)
    env = {"NATS_MCP_NAMESPACE": "team-listen", "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    live_leaf = Leaf(pki.ca_file, cert, key)
    async with serving(tmp_path, "listen", nats_server.url, live_leaf, "--client-ca", str(client_ca), **env) as srv:
        me = target(srv, alice)
        # Listen: a channel's resource; a message sent through Call arrives as notifications/resources/updated
        roadmap = channel_uri("roadmap")
        async with listening(me, [roadmap]) as frames:
            ack = await next_frame(frames, "notifications/subscriptions/acknowledged")
            assert ack["params"]["notifications"]["resourceSubscriptions"] == [roadmap]
            steps = [
                ("warp_handle_set", {"handle": "alice"}),
                ("warp_channels_send", {"channel": "roadmap", "message": "listen over gRPC"}),
            ]
            for n, (name, args) in enumerate(steps):
                code, _, received = await call_status(me, tool_call(name, n, **args))
                assert code == grpc.StatusCode.OK and json.loads(received[-1])["result"]["isError"] is False
            updated = await next_frame(frames, "notifications/resources/updated")
            assert updated["params"]["uri"] == roadmap
        # Listen carries subscriptions/listen only
        channel = open_channel(me)
        try:
            method = channel.unary_stream(
                LISTEN_METHOD, request_serializer=Frame.SerializeToString, response_deserializer=Frame.FromString
            )
            wrong = method(tool_call("warp_handle_get"), metadata=me.metadata())
            with contextlib.suppress(grpc.aio.AioRpcError):
                async for _ in wrong:
                    pass
            assert await wrong.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await channel.close()

        # rotation: a new server certificate and a CA bundle that adds a second client CA, swapped in place
        before = served_certificate(srv.port, pki.ca_file, alice)
        assert before.serial_number == x509.load_pem_x509_certificate(served.cert_file.read_bytes()).serial_number
        other = Pki.create(tmp_path / "other", "second-ca")
        carol = other.client("carol")  # known to the policy by name, from the CA that is not trusted yet
        assert (await session_status(target(srv, carol), frame(INIT)))[0] == grpc.StatusCode.UNAVAILABLE
        kept = open_channel(me)  # a connection made before the rotation keeps working after it
        try:
            first = kept.unary_stream(
                "/nats_mcp.v1.McpTransport/Call",
                request_serializer=Frame.SerializeToString,
                response_deserializer=Frame.FromString,
            )
            [answer] = [f async for f in first(tool_call("warp_handle_get"), metadata=me.metadata())]
            assert json.loads(answer.json)["result"]["isError"] is False

            renewed = pki.issue(
                "server-renewed", dns=["localhost"], ips=["127.0.0.1"], valid_for=datetime.timedelta(days=2)
            )
            bundle = tmp_path / "bundle.pem"
            bundle.write_bytes(pki.ca_file.read_bytes() + other.ca_file.read_bytes())
            replace(key, renewed.key_file)
            replace(cert, renewed.cert_file)
            replace(client_ca, bundle)

            def rotated() -> bool:
                return served_certificate(srv.port, pki.ca_file, alice).serial_number != before.serial_number

            await wait_for(rotated, 15, interval=0.1, message="the server kept presenting the old certificate")
            after = served_certificate(srv.port, pki.ca_file, alice)
            assert after.serial_number == x509.load_pem_x509_certificate(renewed.cert_file.read_bytes()).serial_number
            code, _, received, _ = await session_status(target(srv, carol), frame(INIT))
            assert code == grpc.StatusCode.OK and len(received) == 1  # the new CA is trusted now

            [answer] = [f async for f in first(tool_call("warp_handle_get", 8), metadata=me.metadata())]
            assert json.loads(answer.json)["result"]["isError"] is False
        finally:
            await kept.close()
        assert "TLS certificates reloaded" in srv.stderr()

        # a broken rotation (a truncated certificate) is not taken: the server keeps serving what it had
        cert.write_bytes(renewed.cert_file.read_bytes()[:100])

        def broken_noticed() -> bool:  # the reload is tried before each handshake
            assert served_certificate(srv.port, pki.ca_file, alice).serial_number == after.serial_number
            return "reload failed" in srv.stderr()

        await wait_for(broken_noticed, 15, interval=0.1, message="the broken certificate was not noticed")


# ---- deadlines: a call past its deadline ends, and so does the request behind it -----------------------------------


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_a_deadline_cancels_the_request_behind_the_call(tmp_path: Path, nats_server: NatsServer) -> None:
    pki = Pki.create(tmp_path / "pki")
    alice, bob = target_of(pki, "alice"), target_of(pki, "bob")
    env = {"NATS_MCP_NAMESPACE": "team-deadline", "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    async with serving(
        tmp_path, "deadline", nats_server.url, pki.server(), "--client-ca", str(pki.ca_file), **env
    ) as srv:
        a, b = alice(srv), bob(srv)
        for n, who in enumerate((a, b)):
            code, _, received = await call_status(
                who, tool_call("warp_registry_register", n, agentType="worker", capabilities=["python"])
            )
            assert code == grpc.StatusCode.OK and json.loads(received[-1])["result"]["isError"] is False

        # alice waits up to 30 s for work, but her call has a 1 s deadline
        channel = open_channel(a)
        try:
            method = channel.unary_stream(
                "/nats_mcp.v1.McpTransport/Call",
                request_serializer=Frame.SerializeToString,
                response_deserializer=Frame.FromString,
            )
            started = time.monotonic()
            waiting = method(
                tool_call("warp_work_claim", capability="python", timeout=30000), timeout=1.0, metadata=a.metadata()
            )
            with contextlib.suppress(grpc.aio.AioRpcError):
                async for _ in waiting:
                    pass
            assert await waiting.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 10  # robustness limit: the 1 s deadline ends it, not the 30 s claim
        finally:
            await channel.close()

        # the claim behind it is gone too: work offered now goes to bob, not to a claim nobody waits for
        code, _, received = await call_status(
            b, tool_call("warp_work_broadcast", 3, taskId="t-1", description="do t-1", requiredCapability="python")
        )
        assert code == grpc.StatusCode.OK
        code, _, received = await call_status(b, tool_call("warp_work_claim", 4, capability="python", timeout=5000))
        item = json.loads(received[-1])["result"]["structuredContent"]["workItem"]
        assert item is not None and item["taskId"] == "t-1"


def target_of(pki: Pki, name: str) -> Any:
    leaf = pki.client(name)
    return lambda srv: target(srv, leaf)
