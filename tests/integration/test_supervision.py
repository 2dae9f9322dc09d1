"""The supervised connection: starts while NATS is down, fails calls clearly, recovers by itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import NatsUnavailableError
from tests.support.env import settings_for
from tests.support.natsserver import NatsServer, TokenNatsServer, wait_for

FAST = {"NATS_MCP_NATS_RECONNECT_BACKOFF_MIN_S": "0.05", "NATS_MCP_NATS_RECONNECT_BACKOFF_MAX_S": "0.5"}


async def test_starts_while_nats_is_down_and_recovers(tmp_path: Path, nats_server: NatsServer) -> None:
    url = nats_server.url
    nats_server.stop()
    events: list[str] = []
    conn = NatsConnection(settings_for(tmp_path, NATS_URL=url, **FAST), on_event=lambda e, _d: events.append(e))
    conn.start()  # returns at once
    try:
        await wait_for(lambda: conn.last_error is not None, 10, message="no connection error recorded")
        with pytest.raises(NatsUnavailableError) as info:
            _ = conn.client
        assert info.value.code == "nats_unavailable"
        assert url in str(info.value) and "Hint:" in str(info.value)
        assert "connect_failed" in events

        nats_server.restart()
        assert await conn.wait_connected(15), conn.status()
        await conn.jetstream.account_info()
        assert conn.status()["connected"] is True and conn.status()["last_error"] is None
        assert "connected" in events
    finally:
        await conn.close()


async def test_disconnect_then_reconnect_without_help(tmp_path: Path, nats_server: NatsServer) -> None:
    events: list[str] = []
    conn = NatsConnection(
        settings_for(tmp_path, NATS_URL=nats_server.url, **FAST), on_event=lambda e, _d: events.append(e)
    )
    async with conn:
        assert await conn.wait_connected(10)
        js = conn.jetstream
        await js.add_stream(name="KEEP", subjects=["keep.>"])
        await js.publish("keep.1", b"before")

        nats_server.stop()
        await wait_for(lambda: not conn.connected, 10, message="disconnect not noticed")
        with pytest.raises(NatsUnavailableError):
            _ = conn.jetstream
        assert "disconnected" in events

        nats_server.restart()
        assert await conn.wait_connected(15), conn.status()
        await conn.jetstream.publish("keep.2", b"after")
        info = await conn.jetstream.stream_info("KEEP")
        assert info.state.messages == 2
        assert conn.reconnects >= 1 and "reconnected" in events


async def test_auth_refused_on_reconnect_is_reported_then_recovers(tmp_path: Path, nats_token: TokenNatsServer) -> None:
    """A server that starts refusing our credentials: the error is named (no secret), and it recovers."""
    token = nats_token.token
    conn = NatsConnection(settings_for(tmp_path, NATS_URL=nats_token.url, NATS_MCP_NATS_TOKEN=token, **FAST))
    async with conn:
        assert await conn.wait_connected(10)
        nats_token.stop()
        nats_token.token = "rotated-" + token
        nats_token.restart()
        await wait_for(
            lambda: conn.last_error is not None and conn.last_error.kind == "auth",
            20,
            message=lambda: f"auth failure not reported: {conn.status()}",
        )
        assert token not in str(conn.status())
        nats_token.stop()
        nats_token.token = token
        nats_token.restart()
        assert await conn.wait_connected(20), conn.status()
