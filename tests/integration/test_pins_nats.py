"""Certificate pinning towards NATS (``nats.tls.pins``): real nats-server with TLS and a recording fake server.

The right pin (leaf or CA key) connects, over tls:// and wss://; two pins stage a rotation; a wrong pin is refused
naming the setting and the fingerprint seen, and a fake NATS server that records every byte after the TLS upgrade
receives no CONNECT and no token; a supervised connection whose server comes back with another key is refused on
the reconnect.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest

from nats_mcp.bus.connection import NatsConnection, connect_once
from nats_mcp.bus.connplan import plan_connection
from nats_mcp.bus.errors import NatsConnectError
from nats_mcp.core.pins import pins_of_file
from tests.support.certs import make_tls_material
from tests.support.env import settings_for
from tests.support.natsserver import NatsServer, TlsNatsServer, wait_for

WRONG_PIN = "sha256/" + "A" * 43 + "="


def pins_env(*pins: str) -> str:
    return ",".join(pins)


async def test_pins_against_a_real_tls_server_and_a_key_change_on_reconnect(
    tmp_path: Path, nats_tls: TlsNatsServer
) -> None:
    leaf_pin = pins_of_file(nats_tls.server_cert_file)[0]
    ca_pin = pins_of_file(nats_tls.ca_file)[0]
    other = make_tls_material(tmp_path / "other")  # another CA and server key, for the server's "rotation"
    bundle = tmp_path / "both-cas.pem"
    bundle.write_bytes(nats_tls.ca_file.read_bytes() + other.ca_file.read_bytes())
    base = {"NATS_URL": nats_tls.tls_url, "NATS_MCP_NATS_TLS_CA_FILE": str(bundle)}

    for pins in ([leaf_pin], [ca_pin], [WRONG_PIN, leaf_pin]):  # leaf key, CA key, a staged rotation
        nc = await connect_once(plan_connection(settings_for(tmp_path, **base, NATS_MCP_NATS_TLS_PINS=pins_env(*pins))))
        try:
            await nc.flush(timeout=2)
        finally:
            await nc.close()

    with pytest.raises(NatsConnectError) as info:
        await connect_once(plan_connection(settings_for(tmp_path, **base, NATS_MCP_NATS_TLS_PINS=WRONG_PIN)))
    assert info.value.kind == "tls"
    assert "nats.tls.pins" in str(info.value) and leaf_pin in str(info.value)

    # Supervised and connected with the pin of the server's key; the server comes back with another key.
    settings = settings_for(
        tmp_path, **base, NATS_MCP_NATS_TLS_PINS=leaf_pin, NATS_MCP_NATS_RECONNECT_BACKOFF_MIN_S="0.05"
    )
    conn = NatsConnection(settings)
    conn.start()
    try:
        assert await conn.wait_connected(15), conn.status()
        nats_tls.stop()
        nats_tls.server_cert_file, nats_tls.server_key_file = other.server.cert_file, other.server.key_file
        nats_tls.start()
        new_pin = pins_of_file(other.server.cert_file)[0]
        await wait_for(
            lambda: conn.last_error is not None and new_pin in conn.last_error.message,
            20,
            message=lambda: f"no pin refusal on reconnect: {conn.status()}",
        )
        assert not conn.connected
        assert "nats.tls.pins" in conn.last_error.message  # type: ignore[union-attr]
    finally:
        await conn.close()


async def test_a_wrong_pin_sends_nothing_after_the_handshake(tmp_path: Path) -> None:
    """A fake NATS server (INFO, TLS required) that records what the client writes after the TLS upgrade."""
    material = make_tls_material(tmp_path / "certs")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(material.server.cert_file, material.server.key_file)
    received = bytearray()
    upgrades = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal upgrades
        writer.write(
            b'INFO {"server_id":"X","version":"2.15.1","auth_required":true,"tls_required":true,'
            b'"max_payload":1048576}\r\n'
        )
        try:
            await writer.drain()
            upgrades += 1
            await writer.start_tls(server_ctx)
            while chunk := await reader.read(4096):
                received.extend(chunk)
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    env = {
        "NATS_URL": f"tls://127.0.0.1:{port}",
        "NATS_MCP_NATS_TLS_CA_FILE": str(material.ca_file),
        "NATS_MCP_NATS_TOKEN": "pinned-canary-token",
    }
    async with listener:
        with pytest.raises(NatsConnectError) as info:
            await connect_once(plan_connection(settings_for(tmp_path, **env, NATS_MCP_NATS_TLS_PINS=WRONG_PIN)))
        assert upgrades >= 1  # the client got as far as the TLS upgrade (and saw the key it names below)
        assert b"CONNECT" not in received and b"pinned-canary-token" not in received
        assert "nats.tls.pins" in str(info.value) and pins_of_file(material.server.cert_file)[0] in str(info.value)

        # The same fake server with the right pin does get CONNECT and the token: the recording works.
        right = pins_of_file(material.server.cert_file)[0]
        attempt = asyncio.create_task(
            connect_once(plan_connection(settings_for(tmp_path, **env, NATS_MCP_NATS_TLS_PINS=right)))
        )
        try:
            await wait_for(lambda: b"pinned-canary-token" in received, 10, message="no CONNECT with the right pin")
        finally:
            attempt.cancel()
            with pytest.raises((asyncio.CancelledError, NatsConnectError)):
                await attempt
        assert b"CONNECT" in received


async def test_pins_over_websocket_tls(tmp_path: Path) -> None:
    """wss:// goes through aiohttp, which wraps the handshake's error: the refusal still names the pin."""
    material = make_tls_material(tmp_path / "certs")
    cert, key = (json.dumps(str(f)) for f in (material.server.cert_file, material.server.key_file))
    tls = f"tls {{ cert_file: {cert}, key_file: {key} }}"
    server = NatsServer(tmp_path / "ws", jetstream=False, extra_config=f'websocket {{ listen: "127.0.0.1:-1", {tls} }}')
    with server.start():
        url = server.ports["websocket"][0].replace("wss://0.0.0.0", "wss://127.0.0.1")
        env = {"NATS_URL": url, "NATS_MCP_NATS_TLS_CA_FILE": str(material.ca_file)}
        nc = await connect_once(
            plan_connection(settings_for(tmp_path, **env, NATS_MCP_NATS_TLS_PINS=pins_of_file(material.ca_file)[0]))
        )
        try:
            await nc.flush(timeout=2)
        finally:
            await nc.close()
        with pytest.raises(NatsConnectError) as info:
            await connect_once(plan_connection(settings_for(tmp_path, **env, NATS_MCP_NATS_TLS_PINS=WRONG_PIN)))
        assert "nats.tls.pins" in str(info.value) and pins_of_file(material.server.cert_file)[0] in str(info.value)


@pytest.mark.parametrize(
    "pin",
    ["sha256/short=", "sha1/" + "A" * 27 + "=", "A" * 44, "sha256/" + "A" * 43 + "=,x"],
)
def test_malformed_pins_are_refused_at_load(tmp_path: Path, pin: str) -> None:
    from nats_mcp.config.loader import ConfigError

    with pytest.raises(ConfigError, match=r"nats\.tls\.pins"):
        settings_for(tmp_path, NATS_URL="tls://127.0.0.1:4222", NATS_MCP_NATS_TLS_PINS=pin)
