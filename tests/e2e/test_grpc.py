"""Boundary of the gRPC transport as clients meet it: real serve and bridge processes, mTLS, nats-server, the SDK."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mcp import Client, StdioServerParameters, stdio_client

from nats_mcp.security.dev.certs import agent_policy
from nats_mcp.transports.grpc.client import CALL_METHOD, GrpcTarget, grpc_transport, open_channel, open_session
from nats_mcp.transports.grpc.gen.transport_pb2 import Frame
from tests.e2e.test_coordination_stdio import TOOLS, err, ok
from tests.e2e.test_http_auth import signed
from tests.e2e.test_work_stdio import broadcast, claim, queues, register
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer, _pdeathsig_preexec, wait_for

TRUST_DOMAIN = "spiffe://nats-mcp.test"
POLICY = agent_policy(f"{TRUST_DOMAIN}/agent/*") + "groups: {agent: [agent]}\n"
CAP = "python"


# ---- certificates: a CA, a server, SPIFFE clients (and expired ones) ------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@dataclass
class Pki:
    """A test CA issuing server and client certificates (SAN URI / DNS / IP), any validity window."""

    directory: Path
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, directory: Path, name: str = "ca") -> Pki:
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"nats-mcp test {name}")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        pki = cls(directory, name, key, cert)
        _write(pki.ca_file, cert.public_bytes(serialization.Encoding.PEM))
        return pki

    @property
    def ca_file(self) -> Path:
        return self.directory / f"{self.name}.pem"

    def issue(
        self,
        name: str,
        *,
        uris: Sequence[str] = (),
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        valid_from: datetime.timedelta = datetime.timedelta(hours=-1),
        valid_for: datetime.timedelta = datetime.timedelta(days=1),
    ) -> Leaf:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        sans += [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + valid_from)
            .not_valid_after(now + valid_from + valid_for)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if sans:  # a CN-only certificate has no SAN extension at all (RFC 5280 forbids an empty one)
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return Leaf(
            self.ca_file,
            _write(self.directory / f"{name}-cert.pem", cert.public_bytes(serialization.Encoding.PEM)),
            _write(self.directory / f"{name}-key.pem", pem),
        )

    def server(self) -> Leaf:
        return self.issue("server", dns=["localhost"], ips=["127.0.0.1"])

    def client(self, name: str) -> Leaf:
        return self.issue(name, uris=[f"{TRUST_DOMAIN}/agent/{name}"])


# ---- harness: serve --transport grpc processes, bridges, raw calls ---------------------------------------------------


@dataclass
class GrpcServer:
    """One `nats-mcp serve --transport grpc --port 0` child."""

    proc: asyncio.subprocess.Process
    port: int
    logs: tuple[Path, Path]
    ca_file: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.logs[1].read_text(errors="replace")

    async def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 30) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"serve did not stop on {sig.name}:\n{self.stderr()[-3000:]}") from None


async def launch(tmp_path: Path, name: str, nats_url: str, server_cert: Leaf, *args: str, **env: str) -> GrpcServer:
    """Start a gRPC serve process on an OS-assigned port; return once it listens (it writes the port file then)."""
    port_file = tmp_path / f"{name}.port"
    port_file.unlink(missing_ok=True)
    logs = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    environment = isolated_env(tmp_path, NATS_URL=nats_url, NATS_MCP_GRPC_PORT_FILE=str(port_file), **env)
    with logs[0].open("wb") as out, logs[1].open("wb") as error:
        proc = await asyncio.create_subprocess_exec(
            nats_mcp_exe(),
            "serve",
            "--transport",
            "grpc",
            "--port",
            "0",
            "--tls-cert",
            str(server_cert.cert_file),
            "--tls-key",
            str(server_cert.key_file),
            *args,
            env=environment,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=error,
            preexec_fn=_pdeathsig_preexec(),
        )
    server = GrpcServer(proc, 0, logs, server_cert.ca_file)

    def bound_port() -> int | None:
        if proc.returncode is not None:
            raise AssertionError(f"serve {name} exited with {proc.returncode}:\n{server.stderr()[-3000:]}")
        text = port_file.read_text() if port_file.exists() else ""
        return int(text) if text.endswith("\n") else None

    try:
        server.port = await wait_for(bound_port, 60, interval=0.05, message=f"serve {name} wrote no port file")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return server


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, name: str, nats_url: str, server_cert: Leaf, *args: str, **env: str
) -> AsyncIterator[GrpcServer]:
    server = await launch(tmp_path, name, nats_url, server_cert, *args, **env)
    try:
        yield server
    finally:
        if server.proc.returncode is None:
            code = await server.stop()
            assert code == 0, server.stderr()[-3000:]


@contextlib.asynccontextmanager
async def bridged(tmp_path: Path, server: GrpcServer, leaf: Leaf, mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK client over stdio to `nats-mcp bridge`, which forwards over gRPC with this client certificate."""
    args = [
        "bridge",
        "--grpc",
        server.address,
        "--ca",
        str(server.ca_file),
        "--cert",
        str(leaf.cert_file),
        "--key",
        str(leaf.key_file),
    ]
    params = StdioServerParameters(command=nats_mcp_exe(), args=args, env=isolated_env(tmp_path), cwd=str(tmp_path))
    with (tmp_path / f"bridge-{leaf.cert_file.stem}.log").open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:  # type: ignore[arg-type]
            yield client


def target(server: GrpcServer, leaf: Leaf | None, token: str | None = None, **kw: Any) -> GrpcTarget:
    return GrpcTarget(
        server.address,
        ca_file=server.ca_file,
        cert_file=leaf.cert_file if leaf else None,
        key_file=leaf.key_file if leaf else None,
        token=token,
        **kw,
    )


def frame(message: dict[str, Any]) -> Frame:
    return Frame(json=json.dumps(message).encode())


CLIENT_INFO = {"name": "raw", "version": "1"}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": CLIENT_INFO},
}


def modern(method: str, params: dict[str, Any] | None = None, request_id: int = 7) -> dict[str, Any]:
    """A 2026-07-28 request: the per-request envelope in _meta."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": meta}}


async def session_status(t: GrpcTarget, *frames: Frame) -> tuple[grpc.StatusCode, str, list[bytes], dict[str, str]]:
    """Open a Session, send ``frames``, close; the final status, its details, frames received and trailers."""
    channel = open_channel(t)
    try:
        call = await open_session(channel, t)
        received: list[bytes] = []
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            for f in frames:
                await call.write(f)
            await call.done_writing()
            async for answer in call:
                received.append(answer.json)
        trailers = {k: str(v) for k, v in (await call.trailing_metadata() or ())}
        return await call.code(), await call.details() or "", received, trailers
    finally:
        await channel.close()


async def call_status(
    t: GrpcTarget, request: Frame, metadata: Sequence[tuple[str, str]] = ()
) -> tuple[grpc.StatusCode, str, list[bytes]]:
    """One ``Call``: the final status, its details and the frames received."""
    code, details, received, _ = await call_full(t, request, metadata)
    return code, details, received


async def call_full(
    t: GrpcTarget, request: Frame, metadata: Sequence[tuple[str, str]] = ()
) -> tuple[grpc.StatusCode, str, list[bytes], dict[str, str]]:
    """One ``Call``: the final status, its details, the frames received and the trailing metadata."""
    channel = open_channel(t)
    try:
        method = channel.unary_stream(
            CALL_METHOD, request_serializer=Frame.SerializeToString, response_deserializer=Frame.FromString
        )
        call = method(request, metadata=(*t.metadata(), *metadata))
        received: list[bytes] = []
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for answer in call:
                received.append(answer.json)
        trailers = {k: str(v) for k, v in (await call.trailing_metadata() or ())}
        return await call.code(), await call.details() or "", received, trailers
    finally:
        await channel.close()


def audit_records(trail: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in trail.read_text().splitlines()] if trail.exists() else []


def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return str(path)


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
