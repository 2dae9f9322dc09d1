"""Boundary of MCP-session records in NATS (bus/sessions.py) against a real nats-server: owners, updates, counts,
expiry and announcements."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.sessions import SessionRecord, SessionStore, owner_digest, with_agent, with_level
from nats_mcp.coord.context import Caller
from tests.support.env import connected
from tests.support.natsserver import NatsServer, wait_for

LAYOUT = Layout("team-sessions")
ANN = owner_digest({"client_id": "ann", "issuer": "keys", "subject": "ann"})
BEN = owner_digest({"client_id": "ben", "issuer": "keys", "subject": "ben"})


def record(session: str, owner: str) -> SessionRecord:
    client = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    return SessionRecord(session, owner, "2025-11-25", client)


async def test_a_record_is_found_only_under_its_owner_and_counted_per_owner(nats_conn: NatsConnection) -> None:
    store = SessionStore(nats_conn, LAYOUT, ttl_s=60)
    for n in range(3):
        await store.create(record(f"{n:032x}", ANN))
    await store.create(record("f" * 32, BEN))
    assert await store.get(ANN, "0" * 32) == record("0" * 32, ANN)
    assert await store.get(BEN, "0" * 32) is None  # another credential naming the id finds nothing
    assert owner_digest(None) != ANN  # insecure dev mode's sessions are nobody's else
    assert sorted(r.session for r in await store.of_owner(ANN)) == [f"{n:032x}" for n in range(3)]
    await store.delete(ANN, f"{1:032x}")
    assert await store.get(ANN, f"{1:032x}") is None
    assert len(await store.of_owner(ANN)) == 2  # a deleted key's marker is not a session
    assert [r.session for r in await store.of_owner(BEN)] == ["f" * 32]
    assert await store.of_owner(owner_digest({"client_id": "nobody"})) == []


async def test_updates_compare_and_set_and_a_gone_session_is_not_made_again(nats_conn: NatsConnection) -> None:
    store = SessionStore(nats_conn, LAYOUT, ttl_s=60)
    await store.create(record("a" * 32, ANN))
    caller = Caller(guid="c" * 32, namespace="team-sessions", project_id="0123456789abcdef", owner="o")
    # two processes change the session at once: both changes land
    done = await asyncio.gather(
        store.update(ANN, "a" * 32, with_level("warning")),
        store.update(ANN, "a" * 32, with_agent(asdict(caller), 8)),
    )
    assert done == [True, True]
    found = await store.get(ANN, "a" * 32)
    assert found is not None and found.level == "warning" and [a["guid"] for a in found.agents] == ["c" * 32]
    assert await store.update(ANN, "a" * 32, with_agent(asdict(caller), 8))  # the same agent twice: once
    found = await store.get(ANN, "a" * 32)
    assert found is not None and len(found.agents) == 1
    await store.delete(ANN, "a" * 32)
    assert not await store.update(ANN, "a" * 32, with_level("error"))  # ended: an update does not revive it
    assert await store.get(ANN, "a" * 32) is None


async def test_an_unused_session_expires_and_a_touched_one_stays(tmp_path: Path, nats_server: NatsServer) -> None:
    async with connected(tmp_path, nats_server.url) as conn:
        store = SessionStore(conn, Layout("team-expiry"), ttl_s=2)
        await store.create(record("1" * 32, ANN))
        await store.create(record("2" * 32, ANN))
        kept = record("2" * 32, ANN)

        async def first_gone() -> bool:
            await store.touch(kept)  # the other is in use all along
            return await store.get(ANN, "1" * 32) is None

        await wait_for(first_gone, 10, interval=0.25, message="an idle session did not expire")
        assert await store.get(ANN, "2" * 32) == kept


async def test_announcements_reach_every_listener(tmp_path: Path, nats_server: NatsServer) -> None:
    heard: list[tuple[str, dict[str, Any]]] = []

    async def control(session: str, what: dict[str, Any]) -> None:
        heard.append((session, what))

    async with connected(tmp_path / "a", nats_server.url) as a, connected(tmp_path / "b", nats_server.url) as b:
        listening = await SessionStore(b, LAYOUT, ttl_s=60).listen(control)
        await b.client.flush()
        await SessionStore(a, LAYOUT, ttl_s=60).announce("9" * 32, {"event": "ended"})
        await wait_for(lambda: heard, 10, message="the announcement was not heard")
        await listening.unsubscribe()
    assert heard == [("9" * 32, {"event": "ended"})]
