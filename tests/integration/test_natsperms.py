"""Least-privilege NATS permissions against a real nats-server: each user's block comes from the generator.

The server's users get exactly what ``build_permissions`` prints: an admin (who provisions), agents of
namespace ``team`` (isolated inboxes, the default, and one shared), an agent of namespace ``other`` and a
gateway. Agents run the real domain code and must never be refused; then one of them attacks, and every attempt must
be refused by the server as a permissions violation. Two tests pin what the permissions do *not*
enforce (stream-wide inbox reads, push-consumer delivery), so a server or design change shows up here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import get_batch
from nats_mcp.bus.layout import Layout, audit_subject, audit_writer
from nats_mcp.bus.natsperms import AUDIT_STREAM, inbox_consumer
from nats_mcp.bus.pull import ack, pull
from nats_mcp.bus.streamops import delete_msg
from nats_mcp.coord.service import Coordinator
from nats_mcp.coord.watch import ChangeWatcher
from tests.support.natsperms import (
    NS,
    OTHER,
    REFUSAL_WAIT_S,
    USERS,
    A,
    B,
    C,
    D,
    PermsNatsServer,
    PrefixedConnection,
    Raw,
    provision,
    settings_of,
)
from tests.support.natsserver import wait_for

G = "e5" * 16
CHAIN = "f6" * 16
EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"


@contextlib.asynccontextmanager
async def coordinator(
    tmp_path: Path, server: PermsNatsServer, user: str, namespace: str, guid: str, **extra: str
) -> AsyncIterator[tuple[Coordinator, PrefixedConnection]]:
    """The real domain facade of one agent process, acting as ``guid`` (identity.agent_id pinned to it)."""
    settings = settings_of(tmp_path, server, user, namespace, LOOMINAL_AGENT_ID=guid, **extra)
    conn = PrefixedConnection(settings)
    coord = Coordinator(conn, settings)
    conn.add_listener(coord.on_nats_event)
    conn.start()
    try:
        yield coord, conn
    finally:
        await coord.close()
        await conn.close()


@pytest.fixture
def perms_server(tmp_path: Path) -> Iterator[PermsNatsServer]:
    server = PermsNatsServer(tmp_path / "nats-perms")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
async def provisioned(tmp_path: Path, perms_server: PermsNatsServer) -> PermsNatsServer:
    await provision(tmp_path, perms_server)
    assert perms_server.violations() == []
    return perms_server


async def append_audit(conn: NatsConnection, chain: str) -> None:
    """What the audit stream sink does: publish expecting the chain's previous record, read the chain's last record."""
    subject = audit_subject(chain, audit_writer(conn.settings.nats.inbox_prefix))
    js = conn.jetstream
    first = await js.publish(subject, b'{"seq":1}', stream=AUDIT_STREAM, headers={EXPECTED_LAST: "0"})
    second = await js.publish(subject, b'{"seq":2}', stream=AUDIT_STREAM, headers={EXPECTED_LAST: str(first.seq)})
    last = await js.get_last_msg(AUDIT_STREAM, subject)
    assert (last.seq, last.data) == (second.seq, b'{"seq":2}')


def in_an_hour() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- an agent does its own work --------------------------------------------------------------------


async def test_agents_with_generated_permissions_do_their_own_work(
    tmp_path: Path, provisioned: PermsNatsServer
) -> None:
    """Two agents of one namespace, each with its own user: register, channels, DMs, work, DLQ, audit; no refusal."""
    server = provisioned
    async with (
        coordinator(tmp_path, server, "agent-a", NS, A) as (coord_a, conn_a),
        coordinator(tmp_path, server, "agent-b", NS, B) as (coord_b, conn_b),
    ):
        alice, bob = await coord_a.local_caller(), await coord_b.local_caller()
        assert (alice.guid, bob.guid) == (A, B)
        await coord_a.registry.register(
            alice, handle="alice", agent_type="tester", capabilities=["review"], scope="team"
        )
        await coord_b.registry.register(bob, handle="bob", agent_type="tester", capabilities=["review"], scope="public")
        assert await coord_a.set_handle(alice, "alice") == "alice"
        assert await coord_b.set_handle(bob, "bob") == "bob"

        # channels: send, read from the other agent, status
        sent = await coord_a.channels.send(alice, "alice", "roadmap", "hello team")
        page = await coord_b.channels.read(bob, "roadmap")
        assert [m.id for m in page.messages] == [sent.id]
        assert (await coord_b.channels.status("roadmap"))[0].messages == 1

        # DMs: the signal on the recipient's own subject, then the read that consumes it
        mail = asyncio.Event()
        watcher = ChangeWatcher(conn_b, Layout(NS))
        watch = await watcher.inbox(bob, mail.set)
        recipient = await wait_for(lambda: coord_a.registry.find_visible(alice, B), 10, ignore=(Exception,))
        dm = await coord_a.inbox.send(alice, "alice", recipient, content="hi bob")
        await asyncio.wait_for(mail.wait(), 10)
        count, peeked = await coord_b.inbox.peek(bob)
        assert (count, [m.id for m in peeked]) == (1, [dm.id])
        got = await coord_b.inbox.read(bob)
        assert [m.id for m in got.messages] == [dm.id] and got.messages[0].senderGuid == A
        reply = await coord_b.inbox.send(bob, "bob", await coord_b.registry.find_visible(bob, A), content="hi alice")
        assert [m.id for m in (await coord_a.inbox.read(alice)).messages] == [reply.id]
        await watch.close()
        await watcher.close()

        # work: broadcast with a deadline, claim, complete; a second item dead-lettered, listed, retried
        item = await coord_a.work.broadcast(
            alice, task_id="t1", description="review it", capability="review", deadline=in_an_hour()
        )
        assert [i.id for i in (await coord_b.work.views.list_items("review")).items] == [item.id]
        claimed = await coord_b.work.claim(bob, "review", timeout_ms=5000)
        assert [i.id for i in claimed] == [item.id]
        await coord_b.work.complete(bob, item.id, result={"ok": True})
        doomed = await coord_a.work.broadcast(alice, task_id="t2", description="fails", capability="review")
        assert [i.id for i in await coord_b.work.claim(bob, "review", timeout_ms=5000)] == [doomed.id]
        assert await coord_b.work.fail(bob, doomed.id, "cannot", recoverable=False) == ("dead_lettered", 1)
        dead = await coord_a.work.dlq.page(None, 10, None)
        assert [d.id for d in dead.items] == [doomed.id]
        await coord_a.work.dlq_retry(doomed.id, True)
        status = {s.capability: s for s in await coord_a.work.views.status()}
        assert status["review"].pending == 1

        # reservations: a conflict, a waiting acquire (the table's watch) let through by a release, the change signal
        changed = asyncio.Event()
        table_watcher = ChangeWatcher(conn_b, Layout(NS))
        table_watch = await table_watcher.reservations(changed.set)
        held = (await coord_a.reservations.acquire(alice, "alice", ["src/**"])).reservation
        assert held is not None
        await asyncio.wait_for(changed.wait(), 10)
        assert not (await coord_b.reservations.acquire(bob, "bob", ["src/a.py"])).granted
        waiting = asyncio.create_task(coord_b.reservations.acquire(bob, "bob", ["src/a.py"], wait_ms=20_000))
        await wait_for(lambda: coord_b.reservations._watch._waiters == 1, 10)  # it waits on the table's watch
        await coord_a.reservations.release(alice, held.reservationId)
        got_it = await asyncio.wait_for(waiting, 25)
        assert got_it.granted and got_it.reservation is not None and got_it.reservation.fencingToken > held.fencingToken
        await table_watch.close()
        await table_watcher.close()

        # audit: records appended to a chain of the deployment's stream, the chain resumed from its last record
        await append_audit(conn_a, CHAIN)

        assert conn_a.errors == [] and conn_b.errors == []
        assert server.violations() == []
    assert server.violations() == []


async def test_a_gateway_serves_agents_of_its_namespace(tmp_path: Path, provisioned: PermsNatsServer) -> None:
    """The gateway user runs the domain code for an agent of its namespace and may DM into the namespace it was given;
    it cannot read a namespace it does not serve."""
    server = provisioned
    async with coordinator(tmp_path, server, "gateway", NS, G) as (coord, conn):
        caller = await coord.local_caller()
        await coord.registry.register(
            caller, handle="gw-agent", agent_type="tester", capabilities=["build"], scope="team"
        )
        await coord.channels.send(caller, "gw-agent", "errors", "it broke")
        me = await wait_for(lambda: coord.registry.find_visible(caller, G), 10, ignore=(Exception,))
        dm = await coord.inbox.send(caller, "gw-agent", me, content="note to self")
        assert [m.id for m in (await coord.inbox.read(caller)).messages] == [dm.id]
        item = await coord.work.broadcast(caller, task_id="b1", description="build", capability="build")
        assert [i.id for i in await coord.work.claim(caller, "build", timeout_ms=5000)] == [item.id]
        await coord.work.complete(caller, item.id)
        # an item of a work boundary: its own subjects and consumer, within the same permissions
        bounded = await coord.work.broadcast(caller, task_id="b2", description="b", capability="build", boundary="corp")
        assert [i.boundary for i in await coord.work.claim(caller, "build", timeout_ms=5000)] == ["corp"]
        await coord.work.fail(caller, bounded.id, "no", recoverable=False)  # its DLQ subject names the boundary
        assert bounded.id in [e.id for e in (await coord.work.dlq.page("build", 10, None)).items]
        other = Layout(OTHER)
        await conn.jetstream.publish(other.inbox_subject(D), b"{}", stream=other.inbox_stream)
        await append_audit(conn, CHAIN)
        assert conn.errors == [] and server.violations() == []

    async with Raw.of(server, "gateway") as gw:
        await gw.refused_request(f"$JS.API.DIRECT.GET.{Layout(OTHER).channel_stream('roadmap')}", {"seq": 1})
        await gw.refused_request(f"$JS.API.STREAM.MSG.DELETE.{Layout(OTHER).inbox_stream}", {"seq": 1})
        await gw.refused_subscription(Layout(OTHER).inbox_subject(D))


# -- what an agent cannot do -----------------------------------------------------------------------


async def test_an_agent_cannot_reach_other_agents_or_namespaces(tmp_path: Path, provisioned: PermsNatsServer) -> None:
    """Agent B attacks agent A of its namespace and namespace ``other``; each attempt is a permissions violation."""
    server = provisioned
    team, other = Layout(NS), Layout(OTHER)
    async with Raw.of(server, "admin") as admin:
        js = admin.nc.jetstream()
        await js.publish(other.channel_subject("roadmap"), b"other's plans", stream=other.channel_stream("roadmap"))
        await js.publish(other.inbox_subject(D), b"other's mail", stream=other.inbox_stream)

        async with Raw.of(server, "agent-b") as bob:
            # A's inbox subject: no subscription, not even by wildcard; a DM B itself sends A never reaches B
            spy = await bob.nc.subscribe(team.inbox_subject(A))
            await bob.refusal("subscription", team.inbox_subject(A))
            await bob.nc.jetstream().publish(team.inbox_subject(A), b"to alice", stream=team.inbox_stream)
            await bob.nc.flush()
            assert spy.pending_msgs == 0
            for subject in (
                team.inbox_subjects,
                f"nmcp.{NS}.>",
                ">",
                f"{USERS['agent-a'].perms.inbox_prefix}.>",
                "_INBOX.>",
                other.channel_subject("roadmap"),
            ):
                await bob.refused_subscription(subject)

            # another namespace's streams: no info, no reads, no consumers, no KV reads
            roadmap = other.channel_stream("roadmap")
            await bob.refused_request(f"$JS.API.STREAM.INFO.{roadmap}")
            await bob.refused_request(f"$JS.API.DIRECT.GET.{roadmap}", {"seq": 1, "batch": 10})
            await bob.refused_request(f"$JS.API.STREAM.MSG.GET.{other.inbox_stream}", {"seq": 1})
            await bob.refused_request(f"$JS.API.DIRECT.GET.{other.inbox_stream}", {"seq": 1, "next_by_subj": ">"})
            await bob.refused_request(f"$JS.API.CONSUMER.CREATE.{roadmap}", {"stream_name": roadmap, "config": {}})
            await bob.refused_request(f"$JS.API.CONSUMER.DURABLE.CREATE.{other.work_stream}.spy", {})
            registry = f"KV_{other.registry_bucket}"
            await bob.refused_request(f"$JS.API.DIRECT.GET.{registry}.$KV.{other.registry_bucket}.{D}")
            await bob.refused_request(f"$JS.API.STREAM.INFO.{other.events_stream}")

            # ... nor deletes there, nor writes
            await bob.refused_request(f"$JS.API.STREAM.MSG.DELETE.{other.inbox_stream}", {"seq": 2})
            await bob.refused_request(f"$JS.API.STREAM.MSG.DELETE.{roadmap}", {"seq": 1})
            await bob.refused_request(f"$JS.API.STREAM.PURGE.{roadmap}", {})
            await bob.refused_request(f"$JS.API.STREAM.DELETE.{roadmap}")
            await bob.refused_request(other.channel_subject("roadmap"), b"forged")
            await bob.refused_request(other.inbox_subject(D), b"forged")
            await bob.refused_request(f"$KV.{other.registry_bucket}.{D}", b"{}")

            # no stream that would capture A's replies or anyone's subjects; no change to the namespace's streams
            capture = {"name": "capture", "subjects": [f"{USERS['agent-a'].perms.inbox_prefix}.>"]}
            await bob.refused_request("$JS.API.STREAM.CREATE.capture", capture)
            await bob.refused_request(f"$JS.API.STREAM.UPDATE.{team.channel_stream('roadmap')}", {})
            await bob.refused_request(f"$JS.API.STREAM.DELETE.{team.inbox_stream}")

            # the audit trail is append-only for agents
            await bob.refused_request(f"$JS.API.STREAM.MSG.DELETE.{AUDIT_STREAM}", {"seq": 1})
            await bob.refused_request(f"$JS.API.STREAM.PURGE.{AUDIT_STREAM}", {})
            await bob.refused_request(f"$JS.API.STREAM.UPDATE.{AUDIT_STREAM}", {"name": AUDIT_STREAM})

            # A's registry entry, lease and handle are A's
            for key in (A, f"lease.{A}", f"handle.{A}"):
                bucket = team.registry_bucket if key == A else team.identity_bucket
                await bob.refused_request(f"$KV.{bucket}.{key}", b"{}")
            bob.assert_no_errors()

        info = await js.stream_info(roadmap)
        assert info.state.messages == 1
        assert (await js.stream_info(other.inbox_stream)).state.messages == 1


async def test_an_isolated_inbox_is_read_only_through_its_own_consumer(
    tmp_path: Path, provisioned: PermsNatsServer
) -> None:
    """With isolate_inbox the stream-wide inbox API is denied; the agent's consumer, filtered by its own subject,
    reads its mail, and no consumer over another agent's subject can be made."""
    server = provisioned
    team = Layout(NS)
    stream = team.inbox_stream
    async with Raw.of(server, "admin") as admin:
        js = admin.nc.jetstream()
        await js.publish(team.inbox_subject(A), b"for alice", stream=stream)
        await js.publish(team.inbox_subject(C), b"for carol", stream=stream)

    async with Raw.of(server, "agent-c") as carol:
        await carol.refused_request(f"$JS.API.DIRECT.GET.{stream}", {"seq": 1, "next_by_subj": team.inbox_subject(A)})
        await carol.refused_request(f"$JS.API.DIRECT.GET.{stream}.{team.inbox_subject(A)}")
        await carol.refused_request(
            f"$JS.API.STREAM.MSG.GET.{stream}", {"seq": 1, "next_by_subj": team.inbox_subject(A)}
        )
        await carol.refused_request(f"$JS.API.STREAM.MSG.DELETE.{stream}", {"seq": 1})
        await carol.refused_request(f"$JS.API.STREAM.PURGE.{stream}", {"filter": team.inbox_subject(A)})
        own, theirs = inbox_consumer(C), inbox_consumer(A)
        body_a = {
            "stream_name": stream,
            "config": {"durable_name": theirs, "filter_subject": team.inbox_subject(A), "ack_policy": "explicit"},
        }
        await carol.refused_request(f"$JS.API.CONSUMER.CREATE.{stream}.{theirs}.{team.inbox_subject(A)}", body_a)
        await carol.refused_request(f"$JS.API.CONSUMER.CREATE.{stream}", body_a)
        await carol.refused_request(f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{own}", body_a)
        await carol.refused_subscription(team.inbox_subject(A))

        # the subject-filtered create: a body asking for A's subject is refused by the server itself
        create = f"$JS.API.CONSUMER.CREATE.{stream}.{own}.{team.inbox_subject(C)}"
        config = {"durable_name": own, "name": own, "filter_subject": team.inbox_subject(A), "ack_policy": "explicit"}
        mismatch = {"stream_name": stream, "config": config}
        assert (await carol.api(create, mismatch))["error"]["err_code"] == 10131
        both = [team.inbox_subject(C), team.inbox_subject(A)]
        several = {"stream_name": stream, "config": {**config, "filter_subject": None, "filter_subjects": both}}
        assert (await carol.api(create, several))["error"]["err_code"] == 10137

        # ... and the right one reads C's mail, and only C's
        fine = {"stream_name": stream, "config": {**config, "filter_subject": team.inbox_subject(C)}}
        created = await carol.api(create, fine)
        assert created.get("name") == own, created
        got = await pull(carol.nc, stream, own, 10)
        assert [(d.subject, d.data) for d in got] == [(team.inbox_subject(C), b"for carol")]
        await ack(carol.nc, got[0].reply, "+ACK")
        info = await carol.api(f"$JS.API.CONSUMER.INFO.{stream}.{own}", {})
        assert info["num_pending"] == 0 and info["num_ack_pending"] == 0
        carol.assert_no_errors()
    assert [line for line in server.violations() if "agent-c" not in line] == []


@pytest.mark.slow
async def test_an_isolated_agent_reads_only_its_own_inbox_with_the_real_reader(
    tmp_path: Path, provisioned: PermsNatsServer
) -> None:
    """Issue 19 (also close): agent C runs the real inbox reader under exactly its printed isolate_inbox permissions
    (nats.isolate_inbox on): it peeks, reads with and without filters, each DM once, and nothing is refused; the same
    reader pointed at A's inbox is refused by the server, and A's mail stays unread."""
    server = provisioned
    team = Layout(NS)
    async with (
        coordinator(tmp_path, server, "agent-a", NS, A) as (coord_a, _conn_a),
        coordinator(tmp_path, server, "agent-c", NS, C) as (coord_c, conn_c),
    ):
        alice, carol = await coord_a.local_caller(), await coord_c.local_caller()
        await coord_a.registry.register(alice, handle="alice", agent_type="tester", capabilities=[], scope="team")
        await coord_c.registry.register(carol, handle="carol", agent_type="tester", capabilities=[], scope="team")
        to_carol = await wait_for(lambda: coord_a.registry.find_visible(alice, C), 10, ignore=(Exception,))
        to_alice = await wait_for(lambda: coord_c.registry.find_visible(carol, A), 10, ignore=(Exception,))
        sent = [
            await coord_a.inbox.send(alice, "alice", to_carol, content=f"hi {i}", message_type=kind)
            for i, kind in enumerate(["text", "task", "text"])
        ]
        secret = await coord_c.inbox.send(carol, "carol", to_alice, content="alice's secret")
        assert coord_c.inbox.isolated and coord_a.inbox.isolated

        count, peeked = await coord_c.inbox.peek(carol)
        assert (count, [m.id for m in peeked]) == (3, [m.id for m in sent])
        tasks = await coord_c.inbox.read(carol, message_type="task")
        assert [m.id for m in tasks.messages] == [sent[1].id] and not tasks.has_more
        first = await coord_c.inbox.read(carol, limit=1)
        assert [m.id for m in first.messages] == [sent[0].id] and first.has_more and first.next_cursor
        rest = await coord_c.inbox.read(carol, cursor=first.next_cursor)
        assert [m.id for m in rest.messages] == [sent[2].id] and not rest.has_more
        assert (await coord_c.inbox.read(carol)).messages == []
        assert (await coord_c.inbox.peek(carol))[0] == 0
        assert conn_c.errors == [] and server.violations() == []

        # the attack: the same reader, walking and consuming A's inbox subject
        with pytest.raises(Exception):  # noqa: B017, PT011 - a refused request times out
            await coord_c.inbox.fetch(team.inbox_stream, team.inbox_subject(A), 0, 10)
        outcomes = await coord_c.inbox.claim_all(team.inbox_stream, [1, 2, 3, 4, 5])  # every DM stored so far
        assert all(isinstance(outcome, BaseException) for outcome in outcomes), outcomes
        await wait_for(
            lambda: any("agent-c" in v and f"DIRECT.GET.{team.inbox_stream}" in v for v in server.violations()),
            REFUSAL_WAIT_S,
        )
        got = await coord_a.inbox.read(alice)
        assert [m.id for m in got.messages] == [secret.id]
    assert all("agent-c" in v for v in server.violations()), server.violations()


# -- what the permissions do not enforce (pinned, so a change shows up) -----------------------------


async def test_not_enforced_stream_wide_inbox_reads_within_a_namespace(
    tmp_path: Path, provisioned: PermsNatsServer
) -> None:
    """A shared-inbox agent (--shared-inbox) reads its inbox with batched direct gets and deletes by sequence: the
    subject is in the payload, so the same grants read and delete another agent's mail of the namespace, even an
    isolated agent's. NATS subject permissions cannot stop this: isolate every agent of the namespace (the default
    with --agent), or serve inboxes through a gateway."""
    server = provisioned
    team = Layout(NS)
    async with Raw.of(server, "agent-a") as alice:
        await alice.nc.jetstream().publish(team.inbox_subject(A), b"alice's secret", stream=team.inbox_stream)
    async with Raw.of(server, "agent-b") as bob:
        batch = await get_batch(bob.nc, team.inbox_stream, 1, 10, subject=team.inbox_subject(A))
        assert [m.data for m in batch.messages] == [b"alice's secret"]
        assert await delete_msg(bob.nc, team.inbox_stream, batch.messages[0].seq) is True
        bob.assert_no_errors()


async def test_not_enforced_push_consumer_delivery_writes_outside_the_namespace(
    tmp_path: Path, provisioned: PermsNatsServer
) -> None:
    """nats-server does not check a push consumer's deliver_subject against its creator's permissions (nats-server
    issue 8274): an agent that may create its namespace's work consumers can have a message it wrote delivered into
    another namespace's channel, where it may not publish. Separate NATS accounts per namespace close this."""
    server = provisioned
    team, other = Layout(NS), Layout(OTHER)
    forged = team.work_subject("forge", 5)
    async with Raw.of(server, "agent-b") as bob:
        await bob.refused_request(other.channel_subject("roadmap"), b"direct attempt")
        await bob.nc.jetstream().publish(forged, b"forged into other")  # no Nats-Expected-Stream: it travels along
        config = {
            "durable_name": "forge",
            "filter_subject": forged,
            "ack_policy": "explicit",
            "deliver_subject": other.channel_subject("roadmap"),
        }
        created = await bob.api(
            f"$JS.API.CONSUMER.DURABLE.CREATE.{team.work_stream}.forge",
            {"stream_name": team.work_stream, "config": config},
        )
        assert "error" not in created, created
    async with Raw.of(server, "admin") as admin:
        js = admin.nc.jetstream()

        async def landed() -> bool:
            info = await js.stream_info(other.channel_stream("roadmap"))
            return info.state.messages > 0

        await wait_for(landed, 10, message="the push consumer delivered nothing into the other namespace")
        stored = await js.get_msg(other.channel_stream("roadmap"), 1)
        assert stored.data == b"forged into other"
