"""Reservations against a real nats-server: conflicts, all or nothing, waits, ownership, expiry, fencing across a
restart, the offline rule with the real registry, and many processes acquiring one resource at once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import Forbidden, InvalidArgument, NotFound
from nats_mcp.coord.registry.service import RegistryService
from nats_mcp.coord.reservations.service import ReservationService
from nats_mcp.core import reqctx
from nats_mcp.dashboard.data import Dashboard
from tests.support.env import connected, settings_for
from tests.support.natsserver import NatsServer, wait_for

NS = "alpha"


@pytest.fixture
async def cleanup() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


def agent(n: int) -> Caller:
    return Caller(guid=f"{n:032x}", namespace=NS, project_id="a" * 16, owner="o")


def nobody_offline(_guid: str) -> float | None:
    return None


def service(conn: NatsConnection) -> ReservationService:
    return ReservationService(conn, Layout(NS), nobody_offline)


async def table_revision(svc: ReservationService) -> int:
    kv = await svc.bucket.kv()
    return int((await kv.get(Layout.RESERVATIONS_KEY)).revision or 0)


async def test_conflicts_all_or_nothing_wait_ownership_expiry(
    nats_conn: NatsConnection, cleanup: AsyncExitStack
) -> None:
    a, b, c = agent(1), agent(2), agent(3)
    svc_a, svc_b = service(nats_conn), service(nats_conn)  # two "processes" over one connection
    cleanup.push_async_callback(svc_b.close)

    first = await svc_a.acquire(a, "alice", ["src/api/**"], reason="refactoring the API")
    assert first.granted and first.reservation is not None
    token = first.reservation.fencingToken

    # A conflicting acquire lists the holder; nothing of it is taken (docs/x.md stays free).
    refused = await svc_b.acquire(b, "bob", ["docs/x.md", "./src/api/app.py"])
    assert not refused.granted and refused.reservation is None
    [conflict] = refused.conflicts
    assert (conflict.resource, conflict.heldResource) == ("src/api/app.py", "src/api/**")
    assert (conflict.holderGuid, conflict.holderHandle, conflict.reason) == (a.guid, "alice", "refactoring the API")
    assert [r.holderGuid for r in await svc_b.current()] == [a.guid]
    assert await svc_b.current(resource="docs/**") == []

    # Shared readers share; an exclusive writer does not.
    assert (await svc_b.acquire(b, "bob", ["docs/**"], mode="shared")).granted
    assert (await svc_a.acquire(c, None, ["docs/x.md"], mode="shared")).granted
    assert not (await svc_a.acquire(c, None, ["docs/x.md"])).granted

    # A path escaping the project is refused with nothing written.
    before = await table_revision(svc_a)
    for bad in ("../x", "/etc/passwd", "src/\x00x", "C:/x", ""):
        with pytest.raises(InvalidArgument):
            await svc_a.acquire(c, None, ["ok/file", bad])
    assert await table_revision(svc_a) == before

    # Only the holder renews or releases (same token on renewal).
    rid = first.reservation.reservationId
    with pytest.raises(Forbidden):
        await svc_b.release(b, rid)
    with pytest.raises(Forbidden):
        await svc_b.renew(b, rid)
    renewed = await svc_a.renew(a, rid, 3600)
    assert renewed.fencingToken == token and renewed.expires > first.reservation.expires

    # A waiting acquire gets through when the holder releases, with a larger token.
    waiting = asyncio.create_task(svc_b.acquire(c, None, ["src/api/v2/**"], wait_ms=30_000))
    await wait_for(lambda: not waiting.done(), 1)  # it is waiting, not refused
    await svc_a.release(a, rid)
    got = await asyncio.wait_for(waiting, 30)
    assert got.granted and got.reservation is not None and got.reservation.fencingToken > token
    with pytest.raises(NotFound):
        await svc_a.release(a, rid)

    # An expired reservation frees its resources (read-time filtering; the next write drops it).
    short = await svc_a.acquire(a, "alice", ["tmp/build"], ttl_s=1)
    assert short.granted

    async def granted() -> bool:
        return (await svc_b.acquire(b, "bob", ["tmp/**"])).granted

    assert await wait_for(granted, 10, interval=0.2)
    assert all(r.reservationId != short.reservation.reservationId for r in await svc_b.current())  # type: ignore[union-attr]

    # A resent acquire re-run after its first attempt wrote (the same derived id) answers that grant, adds nothing.
    with reqctx.effects("resent-call"):
        once = await svc_a.acquire(c, None, ["notes/**"])
    with reqctx.effects("resent-call"):
        twice = await svc_b.acquire(c, None, ["notes/**"])
    assert once.reservation is not None and twice.reservation == once.reservation
    assert len(await svc_a.current(holder=c.guid)) == 3  # docs/x.md, src/api/v2/** and notes/**, once each

    # Deregistering releases everything of an agent; an admin force-releases anyone's.
    assert await svc_a.release_agent(c.guid) == 3
    held = (await svc_b.current(holder=b.guid))[0]
    assert (await svc_a.force_release(held.reservationId)).holderGuid == b.guid
    assert [r.holderGuid for r in await svc_a.current()] == [b.guid]  # bob's tmp/** is left


async def test_fencing_tokens_survive_a_server_restart(tmp_path: Path, nats_server: NatsServer) -> None:
    async with connected(tmp_path, nats_server.url) as conn:
        svc = service(conn)
        tokens = [(await svc.acquire(agent(i), None, [f"f{i}"])).reservation.fencingToken for i in range(3)]  # type: ignore[union-attr]
        assert tokens == sorted(set(tokens))
    nats_server.restart()
    async with connected(tmp_path, nats_server.url) as conn:
        after = await service(conn).acquire(agent(9), None, ["f0/**"], wait_ms=0)
        assert not after.granted  # the reservations survived too
        fresh = await service(conn).acquire(agent(9), None, ["g"])
        assert fresh.reservation is not None and fresh.reservation.fencingToken > max(tokens)


async def test_an_agent_offline_past_the_ttl_loses_its_reservations(tmp_path: Path, nats_server: NatsServer) -> None:
    settings = settings_for(
        tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE=NS, NATS_MCP_PRESENCE_HEARTBEAT_INTERVAL_S="0.2"
    )
    async with connected(tmp_path, nats_server.url) as conn:
        registry = RegistryService(conn, settings, Layout(NS))
        await registry.start()
        try:
            a = agent(1)
            await registry.register(a, handle="alice", agent_type="coder", capabilities=[], scope="team")
            svc = ReservationService(conn, Layout(NS), registry.offline_since)
            online = (await svc.acquire(a, "alice", ["src/**"], ttl_s=600)).reservation
            assert online is not None and svc.alive(online, online.expires - 1)  # online: its expiry decides
            await registry.mark_offline(a)
            since = await wait_for(lambda: registry.offline_since(a.guid), 5)
            held = await svc.renew(a, online.reservationId)  # renewed while offline: expires after since + TTL
            end = since + held.ttlSeconds
            assert held.expires > end
            # Offline for less than its TTL: kept; for longer: gone, though its own expiry is later.
            assert svc.alive(held, end - 1)
            assert not svc.alive(held, (end + held.expires) / 2)
            assert not (await svc.acquire(agent(2), None, ["src/x"])).granted  # now is well inside both
        finally:
            await registry.close()


async def test_many_processes_acquire_one_resource_one_holder_at_a_time(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """100 concurrent acquires of one resource from 10 connections (standing in for 10 server processes), each
    waiting, holding briefly and releasing: never two holders at once, every acquire granted once, tokens grow."""
    processes, per_process = 10, int(os.environ.get("NMCP_RESV_PER_PROCESS", "10"))
    holders: list[str] = []
    most = 0
    grants: list[int] = []

    async def one(svc: ReservationService, who: Caller) -> None:
        nonlocal most
        outcome = await svc.acquire(who, None, ["src/shared/**"], wait_ms=120_000)
        assert outcome.granted and outcome.reservation is not None, outcome.conflicts
        holders.append(who.guid)
        most = max(most, len(holders))
        grants.append(outcome.reservation.fencingToken)
        await asyncio.sleep(0)  # let the others see the table while it is held
        holders.remove(who.guid)
        await svc.release(who, outcome.reservation.reservationId)

    async with AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(connected(tmp_path, nats_server.url)) for _ in range(processes)]
        services = [service(conn) for conn in conns]
        for svc in services:
            stack.push_async_callback(svc.close)
        await services[0].ensure()
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    one(services[p], agent(p * per_process + i + 1))
                    for p in range(processes)
                    for i in range(per_process)
                )
            ),
            300,
        )
    assert most == 1
    assert len(grants) == processes * per_process and grants == sorted(set(grants))


async def test_the_dashboard_shows_reservations_without_creating_the_bucket(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    settings = settings_for(
        tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE=NS, NATS_MCP_SECURITY_AUDIT_STREAM="false"
    )
    async with connected(tmp_path, nats_server.url) as conn:
        dash = Dashboard(conn, settings)
        try:
            snap = await dash.build()
            assert snap["reservations"] == [] and not snap["errors"]  # no bucket yet: nothing shown, none made
            assert Layout(NS).reservations_bucket not in [s.config.name for s in await conn.jetstream.streams_info()]
            await service(conn).acquire(agent(1), "alice", ["src/**"], reason="x" * 400)
            [shown] = (await dash.build())["reservations"]
            assert shown["resources"] == ["src/**"] and shown["holderHandle"] == "alice" and shown["fencingToken"] == 1
            assert len(shown["reason"]) == 300 and 0 < shown["expiresInS"] <= 1800  # untrusted text, clipped
        finally:
            await dash.aclose()
