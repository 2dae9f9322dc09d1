"""The local agent identity against a real nats-server: leases, restarts, explicit ids, handles in KV.

Leases keep concurrent processes apart, a restarted process gets its GUID back, an explicit id held by a live
instance conflicts loudly, and handles live in KV.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import nats.js.errors
import pytest

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.config.settings import Settings
from nats_mcp.coord.errors import Conflict, InvalidName
from nats_mcp.coord.registry.identity import (
    IdentityService,
    Lease,
    candidate_guid,
    derive_root_guid,
    derive_subagent_guid,
    pid_namespace,
)
from tests.support.env import connected, settings_for
from tests.support.natsserver import NatsServer

NS = "alpha"
LAYOUT = Layout(NS)


def make_settings(tmp_path: Path, server: NatsServer, **env: str) -> Settings:
    return settings_for(tmp_path, NATS_URL=server.url, NATS_MCP_NAMESPACE=NS, **env)


def service(conn: NatsConnection, settings: Settings) -> IdentityService:
    return IdentityService(conn, settings, LAYOUT)


async def lease_of(conn: NatsConnection, guid: str) -> Lease | None:
    kv = await conn.jetstream.key_value(LAYOUT.identity_bucket)
    return Lease.decode((await kv.get(LAYOUT.lease_key(guid))).value)


async def lease_of_or_none(conn: NatsConnection, guid: str) -> Lease | None:
    try:
        return await lease_of(conn, guid)
    except nats.js.errors.KeyNotFoundError:
        return None


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def test_derived_guid_is_warps(tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection) -> None:
    settings = make_settings(tmp_path, nats_server)
    guid = await service(nats_conn, settings).acquire()
    assert guid == derive_root_guid(socket.gethostname(), str(settings.project.path))


async def test_concurrent_instances_get_different_guids(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection
) -> None:
    settings = make_settings(tmp_path, nats_server)
    first, second, third = (service(nats_conn, settings) for _ in range(3))
    guids = await asyncio.gather(first.acquire(), second.acquire(), third.acquire())
    base = first.base_guid
    assert sorted(guids) == sorted(candidate_guid(base, i) for i in range(3))
    for s, guid in zip((first, second, third), guids, strict=True):
        lease = await lease_of(nats_conn, guid)
        assert lease is not None and lease.instance == s.instance


async def test_release_gives_the_guid_back(tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection) -> None:
    settings = make_settings(tmp_path, nats_server)
    first = service(nats_conn, settings)
    original = await first.acquire()
    await first.release()
    assert await lease_of_or_none(nats_conn, original) is None
    assert await service(nats_conn, settings).acquire() == original


async def test_restart_after_a_crash_gets_the_guid_back_at_once(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection
) -> None:
    settings = make_settings(tmp_path, nats_server)
    crashed = service(nats_conn, settings)
    original = await crashed.acquire()
    # The crashed process's lease: freshly renewed, on this host, by a pid that is gone.
    kv = await nats_conn.jetstream.key_value(LAYOUT.identity_bucket)
    ghost = Lease("ghost", socket.gethostname(), dead_pid(), None, pid_namespace(), time.time())
    await kv.put(LAYOUT.lease_key(original), ghost.encode())

    restarted = service(nats_conn, settings)
    assert await restarted.acquire() == original
    lease = await lease_of(nats_conn, original)
    assert lease is not None and lease.instance == restarted.instance


async def test_a_lease_not_renewed_in_time_is_taken_over(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection
) -> None:
    settings = make_settings(tmp_path, nats_server, NATS_MCP_PRESENCE_HEARTBEAT_INTERVAL_S="0.2")
    original = await service(nats_conn, settings).acquire()
    # Held by a live process elsewhere whose last renewal is older than the TTL (3 x 0.2 s).
    kv = await nats_conn.jetstream.key_value(LAYOUT.identity_bucket)
    silent = Lease("elsewhere", "other-host", 1, None, None, time.time() - 1.0)
    await kv.put(LAYOUT.lease_key(original), silent.encode())
    assert await service(nats_conn, settings).acquire() == original


async def test_renew_keeps_the_lease_and_detects_a_takeover(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection
) -> None:
    settings = make_settings(tmp_path, nats_server)
    holder = service(nats_conn, settings)
    guid = await holder.acquire()
    before = await lease_of(nats_conn, guid)
    await holder.renew()
    after = await lease_of(nats_conn, guid)
    assert before is not None and after is not None and after.renewedAt >= before.renewedAt
    assert after.instance == holder.instance

    kv = await nats_conn.jetstream.key_value(LAYOUT.identity_bucket)
    thief = Lease("thief", "other-host", 1, None, None, time.time())
    await kv.put(LAYOUT.lease_key(guid), thief.encode())
    with pytest.raises(Conflict, match="took over"):
        await holder.renew()


async def test_explicit_agent_id_held_by_a_live_instance_conflicts(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection
) -> None:
    settings = make_settings(tmp_path, nats_server, LOOMINAL_AGENT_ID="ab" * 16)
    assert await service(nats_conn, settings).acquire() == "ab" * 16
    with pytest.raises(Conflict, match="LOOMINAL_AGENT_ID"):
        await service(nats_conn, settings).acquire()


async def test_subagent_guid_derives_from_the_root_without_a_stored_root(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection
) -> None:
    settings = make_settings(tmp_path, nats_server, LOOMINAL_SUBAGENT_TYPE="reviewer")
    root = derive_root_guid(socket.gethostname(), str(settings.project.path))
    guids = await asyncio.gather(service(nats_conn, settings).acquire(), service(nats_conn, settings).acquire())
    expected = derive_subagent_guid(root, "reviewer")
    assert sorted(guids) == sorted([expected, candidate_guid(expected, 1)])


async def test_handles_live_in_kv(tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection) -> None:
    settings = make_settings(tmp_path, nats_server)
    first = service(nats_conn, settings)
    guid = await first.acquire()
    assert await first.get_handle(guid) is None
    await first.set_handle(guid, "reviewer-1")
    assert await service(nats_conn, settings).get_handle(guid) == "reviewer-1"  # another process sees it
    for bad in ("road.map", "a.>", "UPPER", "has space", ""):
        with pytest.raises(InvalidName):
            await first.set_handle(guid, bad)
    with pytest.raises(InvalidName):
        await first.get_handle("not-a-guid")


async def test_a_handle_set_by_one_process_is_there_for_the_next_call_on_another(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection
) -> None:
    """Behind a load balancer an agent's next call lands on another process at once: that process's copy of the
    handles (kept by a KV watch) may not have heard of the new handle yet, and must not answer "no handle"."""
    settings = make_settings(tmp_path, nats_server)
    here = service(nats_conn, settings)
    async with connected(tmp_path / "there", nats_server.url, NATS_MCP_NAMESPACE=NS) as other:
        there = service(other, settings)
        assert await there.get_handle("0" * 32) is None  # its copy is loaded and watching
        for n in range(20):
            guid = f"{n:032x}"
            await here.set_handle(guid, f"agent-{n}")
            assert await there.get_handle(guid) == f"agent-{n}"


async def test_identity_bucket_holds_no_path_or_user(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection
) -> None:
    settings = make_settings(tmp_path, nats_server)
    first = service(nats_conn, settings)
    guid = await first.acquire()
    await first.set_handle(guid, "me")
    kv = await nats_conn.jetstream.key_value(LAYOUT.identity_bucket)
    for key in await kv.keys():
        raw = (await kv.get(key)).value or b""
        assert str(settings.project.path).encode() not in raw
        if key.startswith("lease."):
            assert set(json.loads(raw)) == {"instance", "hostname", "pid", "pid_start", "pidns", "renewedAt"}
