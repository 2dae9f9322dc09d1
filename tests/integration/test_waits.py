"""Waits against a real nats-server: woken by a publish from another connection, cheap while idle, no thread or task
per wait, one subscription for many, bounded per principal by the guard, cancellable, ended by a drain; DM threads."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from nats.js.errors import NotFoundError

from nats_mcp.api.tools.coordination import needs_of
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.config.coordination import ChannelSettings
from nats_mcp.config.security import SecuritySettings
from nats_mcp.coord.channels import ChannelPage, ChannelService
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import InvalidArgument, InvalidName
from nats_mcp.coord.inbox import InboxPage, InboxService
from nats_mcp.coord.models import AgentRecord
from nats_mcp.coord.waits import Waits, check_wait
from nats_mcp.security.guard import CallContext, Guard, Refused
from nats_mcp.security.policy import Policy, parse_policy
from nats_mcp.security.principal import Principal
from tests.support.env import connected
from tests.support.guard import POLICY, Clock, Recorder
from tests.support.natsserver import NatsServer, wait_for

NS = "team-a"
LAYOUT = Layout(NS)
CHANNELS = [ChannelSettings(name="roadmap", description="plans"), ChannelSettings(name="errors", description="x")]
WAITERS = 500


def caller() -> Caller:
    return Caller(guid=uuid.uuid4().hex, namespace=NS, project_id="0" * 16, owner="owner-key")


def channels(conn: NatsConnection) -> ChannelService:
    return ChannelService(conn, conn.settings.model_copy(update={"channels": CHANNELS}), LAYOUT)


def reader(svc: ChannelService, who: Caller, channel: str, after: int) -> Callable[[], Awaitable[ChannelPage]]:
    async def read() -> ChannelPage:
        return await svc.read(who, channel, after_sequence=after)

    return read


def agent() -> tuple[Caller, AgentRecord]:
    """A fresh agent: the Caller it acts as and its registry record."""
    me = caller()
    record = AgentRecord(
        guid=me.guid,
        namespace=NS,
        handle=f"agent-{me.guid[:6]}",
        agentType="tester",
        lastHeartbeat="2026-01-01T00:00:00.000Z",
        registeredAt="2026-01-01T00:00:00.000Z",
    )
    return me, record


async def stored_dms(conn: NatsConnection) -> int:
    try:
        return (await conn.jetstream.stream_info(LAYOUT.inbox_stream)).state.messages
    except NotFoundError:
        return 0


def found(page: ChannelPage | InboxPage) -> bool:
    return bool(page.messages)


def guard(per_principal: int) -> tuple[Guard, CallContext]:
    settings = SecuritySettings.model_validate(
        {
            "rate_per_principal": {"rate_per_s": 10_000, "burst": 10_000},
            "pools": {"read_waits": {"total": 10_000, "per_principal": per_principal}},
        }
    )
    principal = Principal(subject="ci-1", issuer="https://idp.example", method="jwt")
    return Guard(settings, Policy(parse_policy(POLICY)), Recorder(), clock=Clock()), CallContext(principal, "http", NS)


@pytest.mark.slow  # the 10 s of the wait
async def test_a_10_s_wait_with_nothing_arriving_makes_at_most_2_requests(nats_conn: NatsConnection) -> None:
    me = caller()
    svc, waits = channels(nats_conn), Waits(nats_conn, LAYOUT)
    await svc.read(me, "errors", after_sequence=0)  # the stream exists: the wait's read is a plain read
    before = nats_conn.client.stats["out_msgs"]
    page = await waits.channel("errors", reader(svc, me, "errors", 0), found, 10_000)
    assert page.messages == []  # empty at the deadline, not an error
    requests = nats_conn.client.stats["out_msgs"] - before
    assert 1 <= requests <= 2, requests  # the first read (stream info, one batch), then nothing until the deadline
    assert waits.watcher.subjects.subscribed == set()
    await waits.close()


async def test_channel_waits_wake_on_publish_share_one_subscription_and_a_read(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection
) -> None:
    me = caller()
    svc, waits = channels(nats_conn), Waits(nats_conn, LAYOUT)
    await svc.ensure_streams()
    async with connected(tmp_path, nats_server.url) as other:
        sender = channels(other)  # another server process posts
        last = (await sender.send(me, "alice", "roadmap", "before")).sequence

        # waitMs 0 answers at once; a bad waitMs is refused before anything happens
        assert (await waits.channel("roadmap", reader(svc, me, "roadmap", last), found, 0)).messages == []
        for bad in (-1, 60_001, True):
            with pytest.raises(InvalidArgument):
                check_wait(bad)

        # 500 concurrent waits through the guard: no thread and no task of their own, one NATS subscription;
        # the principal's share (500 here) refuses the 501st with a clear message
        g, ctx = guard(per_principal=WAITERS)
        needs = needs_of("channels_read")
        args = {"channel": "roadmap", "afterSequence": last, "waitMs": 30_000}
        read = reader(svc, me, "roadmap", last)

        async def wait_once() -> ChannelPage:  # as the tool does: waits reading the same page share a read
            return await waits.channel("roadmap", read, found, 30_000, key=last)

        threads = threading.active_count()
        tasks = len(asyncio.all_tasks())
        waiting = [
            asyncio.create_task(g.call(ctx, "channels_read", args, wait_once, lambda _: "ok", needs=needs))
            for _ in range(WAITERS)
        ]
        await wait_for(lambda: waits.pending == WAITERS, 30, message=lambda: f"{waits.pending} waits pending")
        assert threading.active_count() == threads
        # the callers' own tasks and the shared subscription's reader (nats-py): nothing per wait
        assert len(asyncio.all_tasks()) == tasks + WAITERS + 1
        assert waits.watcher.subjects.subscribed == {LAYOUT.channel_subject("roadmap")}
        assert g.pools["read_waits"].in_use == WAITERS
        with pytest.raises(Refused) as refused:
            await g.call(ctx, "channels_read", args, wait_once, lambda _: "ok", needs=needs)
        assert refused.value.code == "limit_exceeded" and "waiting reads" in refused.value.message
        immediate = {**args, "waitMs": 0}  # a read that does not wait needs no share
        assert (await g.call(ctx, "channels_read", immediate, read, lambda _: "ok", needs=needs)).messages == []

        requests_before_wake = nats_conn.client.stats["out_msgs"]
        sent = await sender.send(me, "bob", "roadmap", "news")
        pages = await asyncio.wait_for(asyncio.gather(*waiting), 30)
        assert {tuple(m.sequence for m in p.messages) for p in pages} == {(sent.sequence,)}
        woke = nats_conn.client.stats["out_msgs"] - requests_before_wake
        assert woke < 20, woke  # one shared read (2 requests) answered the 500, not a read each (1000)
        assert waits.pending == 0 and g.pools["read_waits"].in_use == 0
        assert waits.watcher.subjects.subscribed == set()  # the last wait gone, its subscription with it

        # cancelled (what an MCP notifications/cancelled does to the call): ends at once, gives everything back
        pending = asyncio.create_task(
            g.call(
                ctx,
                "channels_read",
                args,
                lambda: waits.channel("roadmap", reader(svc, me, "roadmap", sent.sequence), found, 30_000),
                lambda _: "ok",
                needs=needs,
            )
        )
        await wait_for(lambda: waits.pending == 1, 10, message="the wait did not start")
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert waits.pending == 0 and g.pools["read_waits"].in_use == 0
        assert waits.watcher.subjects.subscribed == set()

        # a drain: every wait answers now with what it has, and new ones do not wait
        draining = asyncio.create_task(
            waits.channel("roadmap", reader(svc, me, "roadmap", sent.sequence), found, 30_000)
        )
        await wait_for(lambda: waits.pending == 1, 10, message="the wait did not start")
        waits.stop_waiting()
        assert (await asyncio.wait_for(draining, 10)).messages == []
        assert (await waits.channel("roadmap", reader(svc, me, "roadmap", sent.sequence), found, 30_000)).messages == []

    await waits.close()


async def test_a_teammate_answers_in_a_thread_and_filters_leave_the_rest(
    tmp_path: Path, nats_server: NatsServer, nats_conn: NatsConnection
) -> None:
    async with connected(tmp_path, nats_server.url) as other:
        inbox_a, inbox_b = InboxService(nats_conn, nats_conn.settings), InboxService(other, other.settings)
        waits_a, waits_b = Waits(nats_conn, LAYOUT), Waits(other, LAYOUT)
        a, rec_a = agent()
        b, rec_b = agent()

        # A asks in a new thread (named by the question's id); bad ids are refused and nothing is stored
        for bad in ({"thread_id": "not-a-uuid"}, {"in_reply_to": "x"}, {"thread_id": str(uuid.uuid4()).upper()}):
            with pytest.raises(InvalidName):
                await inbox_a.send(a, "alice", rec_b, content="?", **bad)  # type: ignore[arg-type]
        assert await stored_dms(nats_conn) == 0
        question = await inbox_a.send(a, "alice", rec_b, content="is the build green?")
        thread = question.threadId
        assert thread == question.id and question.inReplyTo is None

        # B reads the thread; its answer is awaited by A's waiting read, filtered to the thread
        async def b_reads() -> InboxPage:
            return await inbox_b.read(b, thread_id=thread)

        asked = await waits_b.inbox(b, b_reads, found, 10_000)
        assert [(m.content, m.threadId, m.senderGuid) for m in asked.messages] == [
            ("is the build green?", thread, a.guid)
        ]

        async def a_reads() -> InboxPage:
            return await inbox_a.read(a, thread_id=thread)

        waiting = asyncio.create_task(waits_a.inbox(a, a_reads, found, 20_000))
        await wait_for(lambda: waits_a.pending == 1, 10, message="A's wait did not start")
        elsewhere = await inbox_b.send(b, "bob", rec_a, content="unrelated")  # another thread: A's wait goes on
        assert elsewhere.threadId == elsewhere.id != thread
        answer = await inbox_b.send(b, "bob", rec_a, content="yes", thread_id=thread, in_reply_to=question.id)
        got = (await asyncio.wait_for(waiting, 20)).messages
        assert [(m.id, m.content, m.threadId, m.inReplyTo) for m in got] == [(answer.id, "yes", thread, question.id)]

        # the filter consumed only what it returned: the unrelated message is still there, with its thread
        rest = (await inbox_a.read(a)).messages
        assert [(m.content, m.threadId) for m in rest] == [("unrelated", elsewhere.id)]
        with pytest.raises(InvalidName):
            await inbox_a.read(a, thread_id="nope")
        await waits_a.close()
        await waits_b.close()
