"""The agent registry against a real nats-server: registration, presence, scopes across namespaces, paging, GC."""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import DIRECTORY_BUCKET, Layout
from nats_mcp.bus.setup import ensure_kv
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import (
    InvalidArgument,
    InvalidCursor,
    InvalidName,
    LimitExceeded,
    NotFound,
    NotRegistered,
)
from nats_mcp.coord.models import AgentEntry, AgentRecord, Scope
from nats_mcp.coord.registry.identity import IdentityService
from nats_mcp.coord.registry.presence import PresenceKeeper
from nats_mcp.coord.registry.service import RegistryService
from nats_mcp.coord.registry.visibility import parse_time
from tests.support.env import settings_for
from tests.support.natsserver import NatsServer, wait_for

PROJECT = {"alpha": "a" * 16, "beta": "b" * 16}
FAST = {"NATS_MCP_PRESENCE_HEARTBEAT_INTERVAL_S": "0.2"}  # stale after 0.6 s

OpenRegistry = Callable[..., Awaitable[RegistryService]]


def caller(n: int, ns: str = "alpha", owner: str = "owner-1", host: str | None = "host-a") -> Caller:
    return Caller(guid=f"{n:032x}", namespace=ns, project_id=PROJECT[ns], owner=owner, hostname=host)


@pytest.fixture
async def open_registry(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection
) -> AsyncIterator[OpenRegistry]:
    """Start registries (one per simulated server process) on the test server; closed at the end."""
    async with AsyncExitStack() as stack:

        async def open_(ns: str = "alpha", conn: NatsConnection | None = None, **env: str) -> RegistryService:
            settings = settings_for(tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE=ns, **env)
            registry = RegistryService(conn or nats_conn, settings, Layout(ns))
            await registry.start()
            stack.push_async_callback(registry.close)
            return registry

        yield open_


async def register(
    registry: RegistryService,
    who: Caller,
    scope: Scope = "team",
    agent_type: str = "coder",
    caps: list[str] | None = None,
) -> AgentEntry:
    return await registry.register(
        who, handle=f"agent-{who.guid[-4:]}", agent_type=agent_type, capabilities=caps or ["py"], scope=scope
    )


async def guids(registry: RegistryService, who: Caller, **filters: object) -> set[str]:
    page = await registry.discover(who, limit=100, **filters)  # type: ignore[arg-type]
    return {agent.guid for agent in page.agents}


# -- registration and presence ------------------------------------------------------------------------


async def test_register_round_trip(open_registry: OpenRegistry) -> None:
    registry = await open_registry()
    me = caller(1)
    entry = await registry.register(
        me, handle="alice", agent_type="coder", capabilities=["py", "go", "py"], scope="team"
    )
    assert entry.guid == me.guid and entry.handle == "alice" and entry.status == "online"
    assert entry.capabilities == ["py", "go"]
    assert entry.registeredAt is not None and entry.hostname == "host-a" and entry.projectId == PROJECT["alpha"]

    assert await guids(registry, me) == {me.guid}  # written through: visible to this process at once
    assert (await registry.get_info(me, me.guid)) == entry
    own = await registry.own_record(me)
    assert own is not None and own.owner == "owner-1"

    again = await registry.register(me, handle="alice-2", agent_type="tester", capabilities=[], scope="public")
    assert again.registeredAt == entry.registeredAt  # kept on re-registration
    assert again.handle == "alice-2" and again.agentType == "tester" and again.capabilities == []

    await registry.set_handle(me, "alice-3")
    assert (await registry.get_info(me, me.guid)).handle == "alice-3"
    await registry.set_handle(caller(2), "nobody")  # not registered: no-op, no entry created
    assert await registry.own_record(caller(2)) is None


async def test_another_process_sees_a_registration(open_registry: OpenRegistry) -> None:
    first, second = await open_registry(), await open_registry()
    await register(first, caller(1))
    await wait_for(lambda: guids(second, caller(2)), 5, message="registration not seen by the other process")


async def test_update_presence(open_registry: OpenRegistry) -> None:
    registry = await open_registry()
    me = caller(1)
    with pytest.raises(NotRegistered):
        await registry.update_presence(me, status="busy")
    await register(registry, me)
    entry, changed = await registry.update_presence(me, status="busy", current_task_count=3)
    assert (entry.status, entry.currentTaskCount, changed) == ("busy", 3, ["status", "currentTaskCount"])
    entry, changed = await registry.update_presence(me, status="busy", capabilities=["rs"])
    assert changed == ["capabilities"] and entry.capabilities == ["rs"]
    for bad in (
        {},
        {"current_task_count": -1},
        {"current_task_count": 1.5},
        {"current_task_count": True},
        {"status": "asleep"},
    ):
        with pytest.raises(InvalidArgument):
            await registry.update_presence(me, **bad)  # type: ignore[arg-type]


async def test_heartbeats_never_overwrite_a_presence_update(open_registry: OpenRegistry) -> None:
    """Inside a process writes to one agent are serialized; across processes CAS makes the later writer re-read."""
    here, there = await open_registry(), await open_registry()
    me = caller(1)
    await register(here, me)
    await wait_for(lambda: guids(there, caller(9)), 5)  # the other process has its copy
    beats = [here.heartbeat(me) for _ in range(10)] + [there.heartbeat(me) for _ in range(10)]
    updates = [here.update_presence(me, current_task_count=7), there.update_presence(me, capabilities=["go"])]
    await asyncio.gather(*beats[:10], updates[0], *beats[10:], updates[1])
    stored = await here.own_record(me)
    assert stored is not None and (stored.currentTaskCount, stored.capabilities) == (7, ["go"])


async def test_deregister_keeps_the_entry_offline(open_registry: OpenRegistry) -> None:
    registry = await open_registry()
    me, other = caller(1), caller(2)
    with pytest.raises(NotRegistered):
        await registry.deregister(me)
    await registry.mark_offline(me)  # shutdown path: no error when not registered
    await register(registry, me)
    await registry.deregister(me)
    assert await guids(registry, other) == set()
    assert await guids(registry, other, include_offline=True) == {me.guid}
    assert await guids(registry, other, status="offline") == {me.guid}
    assert (await registry.get_info(other, me.guid)).status == "offline"
    assert not await registry.heartbeat(me)  # an agent set offline is not heartbeated back
    await registry.mark_offline(me)  # idempotent


async def test_stale_heartbeat_reads_offline(open_registry: OpenRegistry) -> None:
    registry = await open_registry(**FAST)
    me, other = caller(1), caller(2)
    await register(registry, me)
    assert (await registry.get_info(other, me.guid)).status == "online"

    async def offline() -> bool:
        return (await registry.get_info(other, me.guid)).status == "offline"

    await wait_for(offline, 5, message="a silent agent never read offline")
    assert await guids(registry, other) == set()
    stored = await registry.own_record(me)
    assert stored is not None and stored.status == "online"  # computed at read time; nothing had to run
    assert await registry.heartbeat(me)
    assert (await registry.get_info(other, me.guid)).status == "online"


async def test_heartbeats_resume_after_offline_then_online(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection, open_registry: OpenRegistry
) -> None:
    registry = await open_registry(**FAST)
    settings = settings_for(tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE="alpha", **FAST)
    identity = IdentityService(nats_conn, settings, Layout("alpha"))
    me = Caller(guid=await identity.acquire(), namespace="alpha", project_id=PROJECT["alpha"], owner="o")
    other = caller(2)
    await register(registry, me)
    keeper = PresenceKeeper(identity, registry, me, 0.2)
    keeper.start()
    try:
        await wait_for(lambda: keeper.beats >= 2, 5, message="no heartbeats")
        await registry.update_presence(me, status="offline")
        beats = keeper.beats

        async def paused() -> bool:
            seen = await registry.get_info(other, me.guid)
            return time.time() - parse_time(seen.lastHeartbeat) > 0.4  # two intervals without a beat

        await wait_for(paused, 5, message="heartbeats did not pause")
        assert keeper.beats == beats and (await registry.get_info(other, me.guid)).status == "offline"

        entry, changed = await registry.update_presence(me, status="online")
        assert changed == ["status"]
        online_at = parse_time(entry.lastHeartbeat)

        async def online_past_the_threshold() -> bool:
            seen = await registry.get_info(other, me.guid)
            return seen.status == "online" and parse_time(seen.lastHeartbeat) - online_at > 0.6

        await wait_for(online_past_the_threshold, 5, message="heartbeats did not resume")
        assert keeper.running
    finally:
        await keeper.stop()


async def test_gc_removes_old_offline_entries_under_one_lock(
    nats_conn: NatsConnection, open_registry: OpenRegistry
) -> None:
    env = {**FAST, "NATS_MCP_PRESENCE_RETENTION_H": "0.0002", "NATS_MCP_PRESENCE_GC_INTERVAL_S": "3600"}
    first, second = await open_registry(**env), await open_registry(**env)
    old_a, old_b, recent, live = caller(1), caller(2), caller(3), caller(4)
    for who in (old_a, old_b, recent, live):
        await register(first, who, scope="public")
    identity = await ensure_kv(nats_conn.jetstream, Layout("alpha").identity_bucket)
    for who in (old_a, live):
        await identity.put(Layout.handle_key(who.guid), b"some-handle")
    stale_lease = json.dumps(
        {
            "instance": "x",
            "hostname": "elsewhere",
            "pid": 1,
            "pid_start": None,
            "pidns": None,
            "renewedAt": time.time() - 3600,
        }
    ).encode()
    await identity.put(Layout.lease_key(old_a.guid), stale_lease)
    await first.deregister(old_a)
    await first.deregister(old_b)
    retention = 0.0002 * 3600
    gone_at = time.time()
    await wait_for(lambda: time.time() - gone_at > retention, 5)  # the entries must age past the retention
    await first.deregister(recent)
    await first.heartbeat(live)

    removed = await asyncio.gather(first.collect_garbage(), second.collect_garbage())
    assert sorted(removed) == [0, 2]  # exactly one process held lock.gc and did the work
    kv = await nats_conn.jetstream.key_value(Layout("alpha").registry_bucket)
    assert set(await kv.keys()) == {recent.guid, live.guid}
    directory = await nats_conn.jetstream.key_value(DIRECTORY_BUCKET)
    assert set(await directory.keys()) == {f"alpha.{recent.guid}", f"alpha.{live.guid}"}
    identity_keys = set(await identity.keys())
    assert "lock.gc" in identity_keys
    assert Layout.handle_key(old_a.guid) not in identity_keys  # the expired agent's handle and lease went with it
    assert Layout.lease_key(old_a.guid) not in identity_keys
    assert Layout.handle_key(live.guid) in identity_keys
    assert await guids(first, caller(9), include_offline=True) == {recent.guid, live.guid}


# -- scopes and redaction -----------------------------------------------------------------------------


async def test_scopes_across_namespaces(open_registry: OpenRegistry) -> None:
    alpha, beta = await open_registry("alpha"), await open_registry("beta")
    team, private, public, personal = caller(1), caller(2), caller(3, owner="owner-2"), caller(4)
    for who, scope in ((team, "team"), (private, "private"), (public, "public"), (personal, "personal")):
        await register(alpha, who, scope=scope)  # type: ignore[arg-type]
    alpha_viewer = caller(10, owner="owner-3")
    beta_same_owner = caller(11, ns="beta", owner="owner-1")
    beta_other = caller(12, ns="beta", owner="owner-2")

    assert await guids(alpha, alpha_viewer) == {team.guid, public.guid}
    assert await guids(alpha, private) == {team.guid, private.guid, public.guid, personal.guid}

    async def beta_sees_both() -> bool:
        return await guids(beta, beta_same_owner) == {public.guid, personal.guid}

    await wait_for(beta_sees_both, 5, message="directory copies never reached beta")
    assert await guids(beta, beta_other) == {public.guid}

    for viewer, registry, hidden in (
        (alpha_viewer, alpha, private),
        (alpha_viewer, alpha, personal),
        (beta_other, beta, team),
        (beta_other, beta, personal),
        (beta_same_owner, beta, private),
    ):
        with pytest.raises(NotFound) as info:
            await registry.get_info(viewer, hidden.guid)
        with pytest.raises(NotFound):
            await registry.find_visible(viewer, hidden.guid)
        with pytest.raises(NotFound) as missing:
            await registry.get_info(viewer, "f" * 32)
        assert str(info.value).replace(hidden.guid, "X") == str(missing.value).replace("f" * 32, "X")  # no leak

    assert (await beta.find_visible(beta_same_owner, personal.guid)).namespace == "alpha"
    assert (await alpha.get_info(private, private.guid)).registeredAt is not None

    # Scope moved away from public: the directory copy goes, and beta stops seeing it.
    await register(alpha, public, scope="team")

    async def withdrawn() -> bool:
        return public.guid not in await guids(beta, beta_other)

    await wait_for(withdrawn, 5, message="a withdrawn public entry stayed visible across namespaces")


async def test_redaction(open_registry: OpenRegistry) -> None:
    alpha, beta = await open_registry("alpha"), await open_registry("beta")
    public, personal, team = caller(1), caller(2), caller(3)
    await register(alpha, public, scope="public")
    await register(alpha, personal, scope="personal")
    await register(alpha, team, scope="team")
    beta_viewer = caller(11, ns="beta", owner="owner-1")

    async def seen(guid: str) -> AgentEntry:
        return await beta.get_info(beta_viewer, guid)

    shown_public = await wait_for(lambda: seen(public.guid), 5, ignore=(NotFound,))
    assert shown_public.hostname == "host-a" and shown_public.projectId is None
    assert shown_public.registeredAt is None and shown_public.namespace == "alpha"
    shown_personal = await wait_for(lambda: seen(personal.guid), 5, ignore=(NotFound,))
    assert shown_personal.hostname is None and shown_personal.projectId is None
    assert shown_personal.namespace == "alpha"
    shown_team = await alpha.get_info(caller(12, owner="owner-9"), team.guid)
    assert shown_team.hostname == "host-a" and shown_team.projectId == PROJECT["alpha"]
    assert shown_team.registeredAt is None and shown_team.namespace is None
    assert "owner" not in shown_team.model_dump()


async def test_stored_values_hold_no_user_url_or_secret(
    nats_server: NatsServer, nats_conn: NatsConnection, open_registry: OpenRegistry
) -> None:
    registry = await open_registry()
    await register(registry, caller(1), scope="public")
    user = getpass.getuser()
    for bucket, key in (
        (Layout("alpha").registry_bucket, caller(1).guid),
        (DIRECTORY_BUCKET, f"alpha.{caller(1).guid}"),
    ):
        kv = await nats_conn.jetstream.key_value(bucket)
        raw = (await kv.get(key)).value or b""
        stored = json.loads(raw)
        assert set(stored) <= set(AgentRecord.model_fields)
        assert "nats://" not in raw.decode() and str(nats_server.port) not in raw.decode()
        assert user not in [v for v in stored.values() if isinstance(v, str)]


# -- discover -------------------------------------------------------------------------------------------


async def test_discover_filters(open_registry: OpenRegistry) -> None:
    registry = await open_registry()
    coder = caller(1)
    tester = caller(2, host="host-b")
    busy = caller(3)
    await register(registry, coder, agent_type="coder", caps=["py", "go"])
    await register(registry, tester, agent_type="tester", caps=["rs"], scope="public")
    await register(registry, busy, agent_type="coder", caps=["py"])
    await registry.update_presence(busy, status="busy")
    me = caller(9)
    assert await guids(registry, me, agent_type="coder") == {coder.guid, busy.guid}
    assert await guids(registry, me, capability="py") == {coder.guid, busy.guid}
    assert await guids(registry, me, hostname="host-b") == {tester.guid}
    assert await guids(registry, me, project_id=PROJECT["alpha"]) == {coder.guid, tester.guid, busy.guid}
    assert await guids(registry, me, status="busy") == {busy.guid}
    assert await guids(registry, me, status="online") == {coder.guid, tester.guid}
    assert await guids(registry, me, scope="public") == {tester.guid}
    page = await registry.discover(me, agent_type="coder", limit=1)
    assert (page.total, page.has_more, len(page.agents)) == (2, True, 1)


async def test_discover_pages_without_repeats_or_gaps_while_agents_register(open_registry: OpenRegistry) -> None:
    registry = await open_registry()
    original = {caller(n).guid for n in range(1, 46)}
    for n in range(1, 46):
        await register(registry, caller(n))
    me = caller(999)
    seen: list[str] = []
    totals: list[int] = []
    cursor = None
    newcomer = 100
    while True:
        page = await registry.discover(me, limit=20, cursor=cursor)
        seen += [a.guid for a in page.agents]
        totals.append(page.total)
        for _ in range(3):  # agents arriving between pages
            newcomer += 1
            await register(registry, caller(newcomer))
        if not page.has_more:
            assert page.next_cursor is None
            break
        assert page.next_cursor is not None and len(page.agents) == 20
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)), "an agent was returned twice"
    assert original <= set(seen), "an agent was skipped"
    assert totals[0] == 45 and totals == sorted(totals)


async def test_cursor_is_bound_to_filters_and_namespace(open_registry: OpenRegistry) -> None:
    alpha, beta = await open_registry("alpha"), await open_registry("beta")
    for n in range(1, 4):
        await register(alpha, caller(n), agent_type="coder")
    page = await alpha.discover(caller(9), agent_type="coder", limit=1)
    assert page.next_cursor is not None
    nxt = await alpha.discover(caller(9), agent_type="coder", limit=2, cursor=page.next_cursor)  # limit may change
    assert [a.guid for a in nxt.agents] == [caller(2).guid, caller(3).guid]
    for kwargs in ({"agent_type": "tester"}, {}, {"agent_type": "coder", "include_offline": True}):
        with pytest.raises(InvalidCursor):
            await alpha.discover(caller(9), cursor=page.next_cursor, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidCursor):
        await beta.discover(caller(9, ns="beta"), agent_type="coder", cursor=page.next_cursor)
    with pytest.raises(InvalidCursor):
        await alpha.discover(caller(9), agent_type="coder", cursor="garbage!")


async def test_invalid_input_is_rejected_and_nothing_written(open_registry: OpenRegistry) -> None:
    registry = await open_registry()
    me = caller(1)
    for bad in ("road.map", "a.>", "UPPER", "has space", "", "x" * 64):
        with pytest.raises(InvalidName):
            await registry.register(me, handle="h", agent_type=bad, capabilities=[], scope="team")
        with pytest.raises(InvalidName):
            await registry.register(me, handle="h", agent_type="coder", capabilities=["ok", bad], scope="team")
        with pytest.raises(InvalidName):
            await registry.register(me, handle=bad, agent_type="coder", capabilities=[], scope="team")
        with pytest.raises(InvalidName):
            await registry.discover(me, capability=bad)
    with pytest.raises(InvalidArgument):
        await registry.register(me, handle="h", agent_type="coder", capabilities=[], scope="everyone")  # type: ignore[arg-type]
    with pytest.raises(InvalidName):
        await registry.get_info(me, "not-a-guid")
    for limit in (0, 101):
        with pytest.raises(InvalidArgument):
            await registry.discover(me, limit=limit)
    assert await registry.own_record(me) is None


async def test_capability_limit(open_registry: OpenRegistry) -> None:
    registry = await open_registry(NATS_MCP_LIMITS_CAPABILITIES_MAX="4")
    me = caller(1)
    with pytest.raises(LimitExceeded):
        await registry.register(me, handle="h", agent_type="coder", capabilities=list("abcde"), scope="team")
    assert await registry.own_record(me) is None
    entry = await registry.register(me, handle="h", agent_type="coder", capabilities=list("abcdabcd"), scope="team")
    assert entry.capabilities == list("abcd")  # counted after removing duplicates
    with pytest.raises(LimitExceeded):
        await registry.update_presence(me, capabilities=list("vwxyz"))


async def test_caches_recover_after_nats_restarts(
    tmp_path: Path, nats_server: NatsServer, open_registry: OpenRegistry
) -> None:
    fast = {"NATS_MCP_NATS_RECONNECT_BACKOFF_MIN_S": "0.05", "NATS_MCP_NATS_RECONNECT_BACKOFF_MAX_S": "0.3"}
    async with NatsConnection(settings_for(tmp_path, NATS_URL=nats_server.url, **fast)) as watching_conn:
        assert await watching_conn.wait_connected(10)
        watching = await open_registry(conn=watching_conn)
        writer = await open_registry()
        await register(writer, caller(1))
        await wait_for(lambda: guids(watching, caller(9)), 5)

        nats_server.restart()
        assert await watching_conn.wait_connected(15)

        async def sees_new_agent() -> bool:
            with_caller = await guids(watching, caller(9))
            return caller(2).guid in with_caller

        await wait_for(lambda: register(writer, caller(2)), 15, ignore=(Exception,))
        await wait_for(sees_new_agent, 15, ignore=(Exception,), message="the watch did not recover after a restart")


async def test_admission_answers_from_the_live_copy_and_asks_kv_only_when_the_copy_does_not_admit(
    open_registry: OpenRegistry,
) -> None:
    here, there = await open_registry(), await open_registry()  # two processes' copies of one bucket
    me, stranger = caller(1), caller(2)
    store = there._store
    reads: list[str] = []
    read = store.read

    async def counted(guid: str) -> tuple[int, AgentRecord | None]:
        reads.append(guid)
        return await read(guid)

    store.read = counted  # type: ignore[method-assign]  # observes the round trips; the reads still happen
    await register(here, me, caps=["py"])
    # Registered a moment ago elsewhere: admitted at once, whether or not the copy has it yet (KV answers then).
    assert (entry := await there.admission(me, "py")) is not None and entry.guid == me.guid
    await wait_for(lambda: store.copied(me.guid) is not None, 5, message="the copy never got the entry")
    reads.clear()
    for _ in range(3):
        assert (entry := await there.admission(me, "py")) is not None and entry.capabilities == ["py"]
    assert reads == []  # the live copy admitted: no round trip per call
    # A capability added elsewhere a moment ago is admitted at once: the copy does not admit it yet, KV does.
    await here.update_presence(me, capabilities=["py", "go"])
    assert (entry := await there.admission(me, "go")) is not None and "go" in entry.capabilities
    # What KV does not admit either stays refused; every refusal was asked of KV, never of the copy alone.
    reads.clear()
    assert (entry := await there.admission(me, "rust")) is not None and "rust" not in entry.capabilities
    assert await there.admission(stranger) is None
    assert reads == [me.guid, stranger.guid]
