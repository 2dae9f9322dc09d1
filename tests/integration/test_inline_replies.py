"""Answers to requests are filed in the connection's read loop (bus/connection.py), with what nats-py would give."""

from __future__ import annotations

import nats.errors
import pytest
from nats.aio.msg import Msg

from nats_mcp.bus.connection import NatsConnection


async def test_answers_reach_their_requests_without_the_response_subscription_task(nats_conn: NatsConnection) -> None:
    nc = nats_conn.client
    seen: list[Msg] = []

    async def answer(msg: Msg) -> None:
        seen.append(msg)
        if msg.data != b"late":
            await nc.publish(msg.reply, msg.data[::-1], headers={"K": "v", "Nats-Msg-Id": "x y"})

    responder = await nc.subscribe("svc.echo", cb=answer)
    got = await nc.request("svc.echo", b"abc", timeout=5)  # makes nats-py's response subscription
    assert (got.data, got.headers) == (b"cba", {"K": "v", "Nats-Msg-Id": "x y"})
    assert got.subject.startswith("_INBOX.")
    nc._subs[nc._resp_sid]._stop_processing()  # type: ignore[attr-defined]  # nats-py's own path can no longer answer
    assert [(await nc.request("svc.echo", bytes([65 + i]), timeout=5)).data for i in range(5)] == [
        bytes([65 + i]) for i in range(5)
    ]
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request("svc.nobody", b"", timeout=5)
    with pytest.raises(nats.errors.TimeoutError):
        await nc.request("svc.echo", b"late", timeout=0.2)  # never answered in time
    await nc.publish(seen[-1].reply, b"too late")  # the answer after the give-up is dropped, as nats-py drops it
    assert (await nc.request("svc.echo", b"ok", timeout=5)).data == b"ko"
    await responder.unsubscribe()
