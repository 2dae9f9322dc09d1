"""Certificate pinning of the gRPC client and `nats-mcp bridge --pin`: a real `serve --transport grpc` and a recording
fake TLS server.

A staged rotation (the next pin and the current) runs a session; one channel's reconnect to the server after its key
changed (the server re-reads its certificate files; ``max_connection_age`` makes gRPC reconnect) is refused, as is a
new session; a wrong pin sends nothing at all to a fake server (the right pin gets the HTTP/2 preface there); the
bridge reports the refusal naming ``--pin`` and the key seen, and refuses a malformed pin with exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import ssl
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mcp import Client
from typer.testing import CliRunner

from nats_mcp.cli.main import app
from nats_mcp.core.pins import PinMismatchError, pins_of_file
from nats_mcp.transports.grpc.client import GrpcTarget, bridge, connect, grpc_transport, open_channel
from tests.support.grpc_server import Pki, policy_file, serving, target
from tests.support.http_server import run_cli
from tests.support.natsserver import NatsServer, wait_for

WRONG_PIN = "sha256/" + "C" * 43 + "="
HEALTH = health_pb2.HealthCheckRequest(service="nats_mcp.v1.McpTransport")


@pytest.mark.slow  # a serve --transport grpc process: 4 s or more
async def test_pinned_sessions_and_a_key_change_on_reconnect(tmp_path: Path, nats_server: NatsServer) -> None:
    pki = Pki.create(tmp_path / "pki")
    alice, server_cert = pki.client("alice"), pki.server()
    old_pin = pins_of_file(server_cert.cert_file)[0]
    env = {
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_GRPC_MAX_CONNECTION_AGE_S": "1",  # gRPC reconnects every second or so
        "NATS_MCP_GRPC_MAX_CONNECTION_AGE_GRACE_S": "10",
    }
    async with serving(tmp_path, "grpc", nats_server.url, server_cert, "--client-ca", str(pki.ca_file), **env) as srv:
        staged = target(srv, alice, pins=(WRONG_PIN, old_pin))  # the next key's pin and the current one
        async with Client(grpc_transport(staged)) as client:  # type: ignore[arg-type]
            assert (await client.list_tools()).tools

        async with connect(target(srv, alice, pins=(old_pin,))) as (channel, link):
            assert link is not None
            stub = health_pb2_grpc.HealthStub(channel)
            assert (await stub.Check(HEALTH, timeout=10)).status == health_pb2.HealthCheckResponse.SERVING
            pki.issue("server", dns=["localhost"], ips=["127.0.0.1"])  # a new key in the server's files
            new_pin = pins_of_file(server_cert.cert_file)[0]
            assert new_pin != old_pin

            async def refused() -> PinMismatchError | None:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.Check(HEALTH, timeout=2)
                return link.refusal

            refusal = await wait_for(refused, 30, interval=0.2, message="the changed key was not refused")
            assert "--pin" in str(refusal) and new_pin in str(refusal)
            assert link.handshakes >= 1

        with pytest.raises(PinMismatchError):
            async with grpc_transport(target(srv, alice, pins=(old_pin,))):
                pass


async def test_a_wrong_pin_sends_nothing_and_the_bridge_says_why(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    server_cert = pki.server()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(server_cert.cert_file, server_cert.key_file)
    ctx.set_alpn_protocols(["h2"])
    received = bytearray()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(4096):
                received.extend(chunk)
        except OSError:
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(record, "127.0.0.1", 0, ssl=ctx)
    address = f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    wrong = GrpcTarget(address, ca_file=pki.ca_file, token="grpc-canary-token", pins=(WRONG_PIN,))
    right_pin = pins_of_file(server_cert.cert_file)[0]
    async with listener:
        with pytest.raises(PinMismatchError, match=re.escape(right_pin)):
            async with grpc_transport(wrong):
                pass

        async def no_input() -> bytes:
            await asyncio.Event().wait()  # the session ends first
            return b""

        async def no_output(data: bytes) -> None:
            raise AssertionError(f"nothing may come back: {data!r}")

        ended = await bridge(wrong, no_input, no_output)
        assert ended is not None and "--pin" in ended and right_pin in ended
        code, _, stderr = await run_cli(
            tmp_path, "bridge", "--grpc", address, "--ca", str(pki.ca_file), "--pin", WRONG_PIN
        )
        assert code == 1 and "--pin" in stderr and right_pin in stderr
        assert received == b""  # not a byte of HTTP/2, let alone the token

        # The right pin: the fake server does get gRPC's HTTP/2 preface (the recording works).
        attempt = asyncio.create_task(bridge(dataclasses.replace(wrong, pins=(right_pin,)), no_input, no_output))
        try:
            await wait_for(lambda: received.startswith(b"PRI * HTTP/2.0"), 10, message="no HTTP/2 with the right pin")
        finally:
            attempt.cancel()
            await asyncio.gather(attempt, return_exceptions=True)

    with pytest.raises(ValueError, match="connect"):
        open_channel(wrong)  # gRPC's own TLS would not check the pins: refused, never silently unpinned
    with pytest.raises(ValueError, match="--pin"):
        GrpcTarget(address, pins=("sha256/short",))
    with pytest.raises(ValueError, match="TLS"):
        GrpcTarget(address, plaintext=True, pins=(right_pin,))
    malformed = CliRunner().invoke(app, ["bridge", "--grpc", address, "--pin", "sha256/not-a-pin"])
    assert malformed.exit_code == 2 and "--pin" in malformed.output and "not a pin" in malformed.output
