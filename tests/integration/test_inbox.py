"""The inbox against a real nats-server: stored while offline, consumed exactly once, filters that leave the rest."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import DiscardPolicy, StorageType
from nats.js.errors import NotFoundError

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import CoordError, InvalidArgument, InvalidCursor, InvalidName, LimitExceeded
from nats_mcp.coord.inbox import InboxPage, InboxService
from nats_mcp.coord.models import AgentRecord, DirectMessage
from tests.support.env import connected, settings_for
from tests.support.natsserver import NatsServer

NS = "team-a"
_numbers = itertools.count(1)


def agent(namespace: str = NS, status: str = "online") -> tuple[Caller, AgentRecord]:
    """A fresh agent: the Caller it acts as and its registry record."""
    guid = uuid.uuid4().hex
    handle = f"agent-{next(_numbers)}"
    caller = Caller(guid=guid, namespace=namespace, project_id="0123456789abcdef", owner="owner-key")
    record = AgentRecord.model_validate(
        {
            "guid": guid,
            "namespace": namespace,
            "handle": handle,
            "agentType": "tester",
            "status": status,
            "lastHeartbeat": "2026-01-01T00:00:00.000Z",
            "registeredAt": "2026-01-01T00:00:00.000Z",
        }
    )
    return caller, record


@pytest.fixture
def inbox(nats_conn: NatsConnection) -> InboxService:
    return InboxService(nats_conn, nats_conn.settings)


@pytest.fixture
async def second_conn(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[NatsConnection]:
    """Another connection to the same server: a second server process reading the same inbox."""
    async with connected(tmp_path, nats_server.url) as conn:
        yield conn


async def send_many(
    inbox: InboxService, sender: Caller, recipient: AgentRecord, count: int, **kwargs: Any
) -> list[DirectMessage]:
    return [await inbox.send(sender, "sender", recipient, content=f"msg {i}", **kwargs) for i in range(count)]


async def stored_count(conn: NatsConnection, namespace: str) -> int:
    try:
        info = await conn.jetstream.stream_info(Layout(namespace).inbox_stream)
    except NotFoundError:
        return 0
    return info.state.messages


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def ids(page: InboxPage) -> list[str]:
    return [m.id for m in page.messages]


# -- delivery and consume-once ----------------------------------------------------------------------


async def test_dm_to_offline_agent_is_stored_and_read_exactly_once(
    inbox: InboxService, nats_conn: NatsConnection
) -> None:
    sender, _ = agent()
    receiver, record = agent(status="offline")  # nobody is reading: no consumer, no subscription
    sent = [
        await inbox.send(sender, "alice", record, content="hello"),
        await inbox.send(sender, "alice", record, message_type="help-request", content="x", metadata={"k": [1, 2]}),
    ]
    assert sent[0].senderGuid == sender.guid and sent[0].senderHandle == "alice"
    assert await stored_count(nats_conn, NS) == 2

    page = await inbox.read(receiver)
    assert page.messages == sent  # same ids, fields and order (oldest first)
    assert page.messages[1].metadata == {"k": [1, 2]} and page.messages[1].messageType == "help-request"
    assert (page.has_more, page.next_cursor) == (False, None)
    assert await stored_count(nats_conn, NS) == 0

    again = await inbox.read(receiver)
    assert again.messages == [] and not again.has_more and again.next_cursor is None
    info = await nats_conn.jetstream.stream_info(Layout(NS).inbox_stream)
    assert info.state.consumer_count == 0  # no background reader that could eat mail (Warp's M1)


async def test_empty_inbox_answers_at_once(inbox: InboxService) -> None:
    receiver, record = agent(namespace="never-used")
    started = time.perf_counter()
    page = await inbox.read(receiver)  # no inbox stream in this namespace at all
    assert page.messages == [] and not page.has_more
    sender, _ = agent()
    await inbox.send(sender, "s", record, content="one")
    assert len((await inbox.read(receiver)).messages) == 1
    assert (await inbox.read(receiver)).messages == []  # stream exists, inbox empty
    # A robustness limit, not a speed target: Warp waited 30 s on an empty inbox; half of that tells the two apart
    assert time.perf_counter() - started < 15.0


async def test_two_concurrent_readers_return_each_message_exactly_once(
    inbox: InboxService, second_conn: NatsConnection
) -> None:
    other_process = InboxService(second_conn, second_conn.settings)
    sender, _ = agent()
    receiver, record = agent()
    for _round in range(5):
        sent = {m.id for m in await send_many(inbox, sender, record, 30)}
        pages = await asyncio.gather(
            inbox.read(receiver, limit=20),
            other_process.read(receiver, limit=20),
            inbox.read(receiver, limit=20),
        )
        got = [mid for page in pages for mid in ids(page)]
        assert len(got) == len(set(got)), "a message was returned twice"
        rest = await inbox.read(receiver, limit=100)
        got += ids(rest)
        assert sorted(got) == sorted(sent)  # nothing lost, nothing repeated
        assert not rest.has_more
        for page in pages:  # each reader still returns oldest first
            stamps = [int(m.content.split()[1]) for m in page.messages]
            assert stamps == sorted(stamps)


# -- filters and paging ------------------------------------------------------------------------------


async def test_filtered_reads_return_only_matches_and_leave_the_rest(inbox: InboxService) -> None:
    alice, _ = agent()
    bob, _ = agent()
    receiver, record = agent()
    plan = [(alice, "text"), (bob, "work-offer"), (alice, "work-offer"), (bob, "text"), (alice, "text")]
    sent = [await inbox.send(s, "h", record, message_type=t, content=f"{i}") for i, (s, t) in enumerate(plan)]

    offers = await inbox.read(receiver, message_type="work-offer")
    assert ids(offers) == [sent[1].id, sent[2].id] and not offers.has_more
    from_alice = await inbox.read(receiver, sender_guid=alice.guid, limit=1)
    assert ids(from_alice) == [sent[0].id] and from_alice.has_more and from_alice.next_cursor
    rest = await inbox.read(receiver)
    assert ids(rest) == [sent[3].id, sent[4].id]  # the non-matching ones were never consumed
    assert (await inbox.read(receiver)).messages == []


async def test_25_messages_in_pages_of_10_with_cursor(inbox: InboxService) -> None:
    sender, _ = agent()
    receiver, record = agent()
    sent = [m.id for m in await send_many(inbox, sender, record, 25)]
    got: list[str] = []
    cursor: str | None = None
    shapes = []
    while True:
        page = await inbox.read(receiver, limit=10, cursor=cursor)
        got += ids(page)
        shapes.append((len(page.messages), page.has_more))
        if not page.has_more:
            break
        assert page.next_cursor is not None
        cursor = page.next_cursor
    assert shapes == [(10, True), (10, True), (5, False)]
    assert got == sent


async def test_filtered_paging_skips_without_consuming(inbox: InboxService) -> None:
    sender, _ = agent()
    receiver, record = agent()
    sent = [
        await inbox.send(sender, "s", record, message_type="offer" if i % 3 == 0 else "text", content=str(i))
        for i in range(30)
    ]
    offers = [m.id for m in sent if m.messageType == "offer"]
    got: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        page = await inbox.read(receiver, limit=4, cursor=cursor, message_type="offer")
        got += ids(page)
        cursor = page.next_cursor
        if not page.has_more:
            break
    assert got == offers
    rest = await inbox.read(receiver, limit=100)
    assert ids(rest) == [m.id for m in sent if m.messageType == "text"]


async def test_cursor_is_bound_to_filters_owner_and_namespace(inbox: InboxService) -> None:
    sender, _ = agent()
    receiver, record = agent()
    await send_many(inbox, sender, record, 3, message_type="text")
    page = await inbox.read(receiver, limit=1, message_type="text")
    assert page.next_cursor is not None
    with pytest.raises(InvalidCursor):
        await inbox.read(receiver, cursor=page.next_cursor)  # filters changed
    stranger, _ = agent()
    with pytest.raises(InvalidCursor):
        await inbox.read(stranger, cursor=page.next_cursor, message_type="text")  # another owner
    elsewhere = Caller(guid=receiver.guid, namespace="team-b", project_id="0123456789abcdef", owner="o")
    with pytest.raises(InvalidCursor):
        await inbox.read(elsewhere, cursor=page.next_cursor, message_type="text")
    with pytest.raises(InvalidCursor):
        await inbox.read(receiver, cursor="continue")  # Warp's M3 hint
    assert len((await inbox.read(receiver, cursor=page.next_cursor, message_type="text")).messages) == 2


# -- limits and validation ---------------------------------------------------------------------------


async def test_full_inbox_refuses_new_mail_and_keeps_the_old(tmp_path: Path, nats_server: NatsServer) -> None:
    settings = settings_for(tmp_path, NATS_URL=nats_server.url, NATS_MCP_LIMITS_INBOX_MAX_MESSAGES="3")
    async with NatsConnection(settings) as conn:
        assert await conn.wait_connected(10)
        inbox = InboxService(conn, settings)
        sender, _ = agent()
        receiver, record = agent()
        _, neighbour = agent()
        first = await send_many(inbox, sender, record, 3)
        with pytest.raises(LimitExceeded) as info:
            await inbox.send(sender, "s", record, content="one too many")
        assert info.value.code == "limit_exceeded" and record.handle in info.value.message
        await inbox.send(sender, "s", neighbour, content="other inboxes are not affected")

        page = await inbox.read(receiver)
        assert page.messages == first
        await inbox.send(sender, "s", record, content="room again after reading")
        assert len((await inbox.read(receiver)).messages) == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"content": ""}, InvalidArgument),
        ({"content": "x" * (64 * 1024 + 1)}, LimitExceeded),
        ({"content": "é" * (32 * 1024 + 1)}, LimitExceeded),  # bytes, not characters
        ({"content": "ok", "message_type": "Bad.Type"}, InvalidName),
        ({"content": "ok", "message_type": "work.>"}, InvalidName),
        ({"content": "ok", "message_type": ""}, InvalidName),
        ({"content": "ok", "metadata": {"a": "x" * (16 * 1024)}}, LimitExceeded),
        ({"content": "ok", "metadata": nested(17)}, LimitExceeded),
        ({"content": "ok", "metadata": nested(10_000)}, LimitExceeded),
        ({"content": "ok", "metadata": ["not", "an", "object"]}, InvalidArgument),
        ({"content": "ok", "metadata": {"n": float("nan")}}, InvalidArgument),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
async def test_bad_input_is_refused_and_nothing_is_stored(
    inbox: InboxService, nats_conn: NatsConnection, kwargs: dict[str, Any], error: type[CoordError]
) -> None:
    sender, _ = agent()
    receiver, record = agent()
    with pytest.raises(error) as info:
        await inbox.send(sender, "s", record, **kwargs)
    assert info.value.code == error.code
    assert await stored_count(nats_conn, NS) == 0
    assert (await inbox.read(receiver)).messages == []


async def test_limits_that_just_fit_are_accepted(inbox: InboxService) -> None:
    sender, _ = agent()
    receiver, record = agent()
    await inbox.send(sender, "s", record, content="x" * (64 * 1024), metadata=nested(16))
    assert len((await inbox.read(receiver)).messages) == 1


async def test_bad_read_arguments(inbox: InboxService) -> None:
    receiver, _ = agent()
    for limit in (0, 101, True):
        with pytest.raises(InvalidArgument):
            await inbox.read(receiver, limit=limit)
    with pytest.raises(InvalidName):
        await inbox.read(receiver, sender_guid="not-a-guid")
    with pytest.raises(InvalidName):
        await inbox.read(receiver, message_type="a b")


# -- isolation ---------------------------------------------------------------------------------------


async def test_nobody_but_the_owner_sees_the_inbox(inbox: InboxService) -> None:
    sender, _ = agent()
    receiver, record = agent()
    await send_many(inbox, sender, record, 3)
    other_guid, _ = agent()
    same_guid_elsewhere = Caller(guid=receiver.guid, namespace="team-b", project_id="0123456789abcdef", owner="o")
    assert (await inbox.read(other_guid)).messages == []
    assert (await inbox.read(same_guid_elsewhere)).messages == []
    assert (await inbox.read(sender)).messages == []
    assert len((await inbox.read(receiver)).messages) == 3


async def test_cross_namespace_send_lands_in_the_recipients_namespace(
    inbox: InboxService, nats_conn: NatsConnection
) -> None:
    sender, _ = agent(namespace="alpha")
    receiver, record = agent(namespace="beta")
    sent = await inbox.send(sender, "from-alpha", record, content="hi across")
    assert await stored_count(nats_conn, "beta") == 1
    assert await stored_count(nats_conn, "alpha") == 0
    raw = await nats_conn.jetstream.get_last_msg(Layout("beta").inbox_stream, Layout("beta").inbox_subject(record.guid))
    assert raw.headers and raw.headers["Nats-Msg-Id"] == sent.id
    page = await inbox.read(receiver)
    assert page.messages == [sent] and page.messages[0].senderGuid == sender.guid


# -- stream shape and robustness ---------------------------------------------------------------------


async def test_inbox_stream_is_created_with_the_configured_limits(
    inbox: InboxService, nats_conn: NatsConnection
) -> None:
    sender, _ = agent()
    _, record = agent()
    await inbox.send(sender, "s", record, content="creates the stream")
    config = (await nats_conn.jetstream.stream_info(Layout(NS).inbox_stream)).config
    assert config.storage == StorageType.FILE
    assert config.subjects == [Layout(NS).inbox_subjects]
    assert config.max_msgs_per_subject == 1000
    assert config.discard == DiscardPolicy.NEW and config.discard_new_per_subject is True
    assert config.max_age == 7 * 86400
    assert config.allow_direct is True


async def test_stream_deleted_behind_our_back_is_recreated_on_send(
    inbox: InboxService, nats_conn: NatsConnection
) -> None:
    sender, _ = agent()
    receiver, record = agent()
    await inbox.send(sender, "s", record, content="first")
    await nats_conn.jetstream.delete_stream(Layout(NS).inbox_stream)
    assert (await inbox.read(receiver)).messages == []
    second = await inbox.send(sender, "s", record, content="second")
    assert (await inbox.read(receiver)).messages == [second]


async def test_inbox_stream_without_direct_get_is_still_read(inbox: InboxService, nats_conn: NatsConnection) -> None:
    """A stream made without allow_direct (an older version, or by hand) falls back to the API get."""
    sender, _ = agent()
    receiver, record = agent()
    sent = await send_many(inbox, sender, record, 3)
    await nats_conn.jetstream.update_stream(replace(inbox.inbox_config(Layout(NS)), allow_direct=False))
    page = await inbox.read(receiver, limit=2)
    assert page.messages == sent[:2] and page.has_more
    assert (await inbox.read(receiver, cursor=page.next_cursor)).messages == sent[2:]


async def test_payloads_that_are_not_dms_are_dropped_not_returned(
    inbox: InboxService, nats_conn: NatsConnection
) -> None:
    sender, _ = agent()
    receiver, record = agent()
    good = await inbox.send(sender, "s", record, content="real")
    subject = Layout(NS).inbox_subject(record.guid)
    await nats_conn.jetstream.publish(subject, b"not json")
    await nats_conn.jetstream.publish(subject, b'{"recipientGuid": "someone else"}')
    later = await inbox.send(sender, "s", record, content="also real")
    page = await inbox.read(receiver)
    assert page.messages == [good, later]
    assert await stored_count(nats_conn, NS) == 0


# -- cost --------------------------------------------------------------------------------------------


async def test_read_latency_does_not_grow_with_the_inbox(
    inbox: InboxService, capsys: pytest.CaptureFixture[str]
) -> None:
    sender, _ = agent()
    small_reader, small = agent()
    big_reader, big = agent()
    rounds = 20

    async def timed_read(caller: Caller, **kwargs: Any) -> float:
        started = time.perf_counter()
        page = await inbox.read(caller, limit=10, **kwargs)
        elapsed = time.perf_counter() - started
        assert len(page.messages) == 10
        return elapsed * 1000

    small_ms = []
    for _ in range(rounds):
        await send_many(inbox, sender, small, 10)
        small_ms.append(await timed_read(small_reader))
    await send_many(inbox, sender, big, 1000)
    big_ms = [await timed_read(big_reader) for _ in range(rounds)]

    # A filter whose matches sit at the end of a 990-message inbox: the worst case, a scan of the inbox.
    await send_many(inbox, sender, big, 10, message_type="rare")
    filtered_ms = await timed_read(big_reader, message_type="rare")
    with capsys.disabled():
        print(
            f"\ninbox read(limit=10) median: {statistics.median(small_ms):.2f} ms with 10 messages, "
            f"{statistics.median(big_ms):.2f} ms with 1000 (800..1000) messages; "
            f"filtered read past 810 non-matching: {filtered_ms:.2f} ms"
        )


# -- isolated reads (nats.isolate_inbox): through the owner's own consumer -----------------------------------------


def isolated(conn: NatsConnection) -> InboxService:
    service = InboxService(conn, conn.settings)
    service.isolated = True
    return service


async def test_isolated_readers_return_each_message_exactly_once_in_order(
    inbox: InboxService, nats_conn: NatsConnection, second_conn: NatsConnection
) -> None:
    """Three concurrent readers (two processes) through one agent's consumer: nothing twice, nothing lost, each page
    oldest first; filtered reads leave the rest for later; consumed mail stays stored (the agent may not delete)."""
    one, other_process = isolated(nats_conn), isolated(second_conn)
    sender, _ = agent()
    receiver, record = agent()
    for _round in range(3):
        sent = {m.id for m in await send_many(inbox, sender, record, 30)}
        pages = await asyncio.gather(
            one.read(receiver, limit=20), other_process.read(receiver, limit=20), one.read(receiver, limit=20)
        )
        got = [mid for page in pages for mid in ids(page)]
        assert len(got) == len(set(got)), "a message was returned twice"
        rest = await one.read(receiver, limit=100)
        got += ids(rest)
        assert sorted(got) == sorted(sent) and not rest.has_more
        for page in pages:
            stamps = [int(m.content.split()[1]) for m in page.messages]
            assert stamps == sorted(stamps)
    assert await stored_count(nats_conn, NS) == 90

    offers = await send_many(inbox, sender, record, 3, message_type="work-offer")
    texts = await send_many(inbox, sender, record, 2)
    assert await one.peek(receiver) == (5, [*offers, *texts])
    picked = await one.read(receiver, message_type="work-offer", limit=2)
    assert ids(picked) == [m.id for m in offers[:2]] and picked.has_more
    assert ids(await other_process.read(receiver)) == [m.id for m in [offers[2], *texts]]
    assert await one.peek(receiver) == (0, [])
    nobody, _ = agent(namespace="never-used-isolated")  # no inbox stream at all: empty at once, nothing created
    assert (await one.read(nobody)).messages == [] and await one.peek(nobody) == (0, [])
