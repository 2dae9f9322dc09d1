"""Test boundary for bulk channel history: many well-formed stored messages, fast, for paging and scaling checks."""

from __future__ import annotations

import json
import uuid

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from tests.support.natsserver import wait_for


async def fill_channel(conn: NatsConnection, layout: Layout, channel: str, n: int, timeout: float = 60) -> None:
    """Core publishes of ``n`` stored-message bodies, then wait until the stream holds ``n`` more messages."""
    nc, stream = conn.client, layout.channel_stream(channel)
    before = (await conn.jetstream.stream_info(stream)).state.messages
    for i in range(n):
        body = {
            "id": str(uuid.uuid4()),
            "handle": "bulk",
            "senderGuid": "0" * 32,
            "message": f"history {i} " + "x" * 100,
            "timestamp": "2026-01-01T00:00:00.000Z",
        }
        await nc.publish(layout.channel_subject(channel), json.dumps(body).encode())
    await nc.flush()

    async def stored() -> bool:
        return (await conn.jetstream.stream_info(stream)).state.messages >= before + n

    await wait_for(stored, timeout, message=f"{n} messages stored in {stream}")
