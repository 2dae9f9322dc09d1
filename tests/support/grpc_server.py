"""The gRPC transport: a test PKI, `nats-mcp serve --transport grpc` launchers and frame/call helpers."""

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
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mcp import Client, StdioServerParameters, stdio_client

from nats_mcp.security.dev.certs import agent_policy
from nats_mcp.transports.grpc.client import (
    CALL_METHOD,
    LISTEN_METHOD,
    GrpcTarget,
    open_channel,
    open_session,
)
from nats_mcp.transports.grpc.gen.transport_pb2 import Frame
from tests.support.env import isolated_env, nats_mcp_exe, stop_serve
from tests.support.natsserver import _pdeathsig_preexec, wait_for

TRUST_DOMAIN = "spiffe://nats-mcp.test"


POLICY = agent_policy(f"{TRUST_DOMAIN}/agent/*") + "groups: {agent: [agent]}\n"


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
        return await stop_serve(self.proc, "serve", self.stderr, sig, timeout)


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
async def bridged(
    tmp_path: Path, server: GrpcServer, leaf: Leaf, *extra: str, mode: str = "auto"
) -> AsyncIterator[Client]:
    """The SDK client over stdio to `nats-mcp bridge`, which forwards over gRPC with this client certificate (and
    ``extra`` arguments, e.g. ``--pin``)."""
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
        *extra,
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


def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return str(path)


def tool_call(name: str, request_id: int = 7, **arguments: Any) -> Frame:
    return frame(modern("tools/call", {"name": name, "arguments": arguments}, request_id))


@contextlib.asynccontextmanager
async def listening(t: Any, uris: list[str]) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """A ``Listen`` call for ``uris``; its frames arrive on the queue until the block ends (which cancels the call)."""
    channel = open_channel(t)
    method = channel.unary_stream(
        LISTEN_METHOD, request_serializer=Frame.SerializeToString, response_deserializer=Frame.FromString
    )
    request = modern("subscriptions/listen", {"notifications": {"resourceSubscriptions": uris}}, 99)
    call = method(frame(request), metadata=(*t.metadata(), ("mcp-method", "subscriptions/listen")))
    frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def pump() -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for answer in call:
                await frames.put(json.loads(answer.json))

    task = asyncio.create_task(pump())
    try:
        yield frames
    finally:
        call.cancel()
        await asyncio.wait_for(task, 10)
        await channel.close()


async def next_frame(frames: asyncio.Queue[dict[str, Any]], method: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while (left := deadline - time.monotonic()) > 0:
        message = await asyncio.wait_for(frames.get(), left)
        if message.get("method") == method:
            return message
    raise AssertionError(f"no {method} within 15 s")
