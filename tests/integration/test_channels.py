"""Channels against a real nats-server: send/read round trip, stable paging, polling, gaps, limits, errors, cost."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from nats.js.api import StorageType

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import get_batch, last_at_or_before
from nats_mcp.bus.errors import NatsUnavailableError
from nats_mcp.bus.layout import Layout
from nats_mcp.config.coordination import ChannelSettings
from nats_mcp.config.settings import Settings
from nats_mcp.coord.channels import ChannelPage, ChannelService
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import InvalidArgument, InvalidCursor, InvalidName, LimitExceeded, NotFound
from nats_mcp.coord.pagination import make_cursor
from tests.support.env import settings_for
from tests.support.history import fill_channel

NS = "chantest"
LAYOUT = Layout(NS)
CHANNELS = [
    ChannelSettings(name="roadmap", description="plans"),
    ChannelSettings(name="errors", description="failures"),
    ChannelSettings(name="big", description="long history", max_messages=50_000, max_bytes=64 * 1024 * 1024),
]


def make_settings(base: Settings, channels: list[ChannelSettings] | None = None, **limits: int) -> Settings:
    return base.model_copy(
        update={
            "channels": channels if channels is not None else CHANNELS,
            "limits": base.limits.model_copy(update=limits),
        }
    )


def make_caller() -> Caller:
    return Caller(guid=uuid.uuid4().hex, namespace=NS, project_id="0" * 16, owner="owner-key")


@pytest.fixture
def service(nats_conn: NatsConnection) -> ChannelService:
    return ChannelService(nats_conn, make_settings(nats_conn.settings), LAYOUT)


@pytest.fixture
def caller() -> Caller:
    return make_caller()


async def send_many(svc: ChannelService, caller: Caller, channel: str, n: int, start: int = 0) -> list[int]:
    return [(await svc.send(caller, "alice", channel, f"msg {i}")).sequence for i in range(start, start + n)]


async def fill_raw(conn: NatsConnection, channel: str, n: int) -> None:
    await fill_channel(conn, LAYOUT, channel, n, timeout=30)


async def page_back(svc: ChannelService, caller: Caller, channel: str, limit: int) -> list[ChannelPage]:
    pages = [await svc.read(caller, channel, limit=limit)]
    while pages[-1].next_cursor is not None:
        pages.append(await svc.read(caller, channel, limit=limit, cursor=pages[-1].next_cursor))
        assert len(pages) < 1000
    return pages


def seqs(page: ChannelPage) -> list[int]:
    return [m.sequence for m in page.messages]


# -- send / read ---------------------------------------------------------------------------------------


async def test_send_read_round_trip(service: ChannelService, caller: Caller, nats_conn: NatsConnection) -> None:
    await service.ensure_streams()
    sent = await service.send(caller, "alice", "roadmap", "  ship v1  ", scope="team")
    assert sent.sequence == 1
    assert sent.senderGuid == caller.guid and sent.handle == "alice" and sent.scope == "team"
    assert str(uuid.UUID(sent.id)) == sent.id
    assert sent.timestamp.endswith("Z")

    page = await service.read(caller, "roadmap")
    assert page.messages == [sent]
    assert (page.total, page.has_more, page.next_cursor, page.channel) == (1, False, None, "roadmap")

    raw = await nats_conn.jetstream.get_msg(LAYOUT.channel_stream("roadmap"), 1)
    stored = json.loads(raw.data)
    assert stored == {
        "id": sent.id,
        "handle": "alice",
        "senderGuid": caller.guid,
        "message": "  ship v1  ",
        "timestamp": sent.timestamp,
        "scope": "team",
    }
    assert raw.headers is not None and raw.headers["Nats-Msg-Id"] == sent.id


async def test_streams_are_created_lazily_with_direct_gets(
    service: ChannelService, caller: Caller, nats_conn: NatsConnection
) -> None:
    sent = await service.send(caller, "alice", "errors", "first")  # no ensure_streams before
    info = await nats_conn.jetstream.stream_info(LAYOUT.channel_stream("errors"))
    assert info.config.allow_direct is True
    assert info.config.storage == StorageType.FILE
    assert info.config.subjects == [LAYOUT.channel_subject("errors")]
    assert (info.config.max_msgs, info.config.max_bytes, info.config.max_age) == (10_000, 10 * 1024 * 1024, 86_400)
    fresh = ChannelService(nats_conn, service._settings, LAYOUT)  # another process: reads lazily too
    assert (await fresh.read(caller, "errors")).messages == [sent]
    assert (await fresh.read(caller, "roadmap")).messages == []  # created on first read, empty


async def test_unreadable_raw_messages_are_skipped(
    service: ChannelService, caller: Caller, nats_conn: NatsConnection
) -> None:
    await service.ensure_streams()
    await service.send(caller, "alice", "roadmap", "one")
    await nats_conn.jetstream.publish(LAYOUT.channel_subject("roadmap"), b"not json", headers={"Status": "204"})
    await service.send(caller, "alice", "roadmap", "three")
    page = await service.read(caller, "roadmap")
    assert [m.message for m in page.messages] == ["one", "three"]
    assert page.total == 3


# -- paging back -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arrivals", [0, 7])
async def test_paging_back_is_stable(service: ChannelService, caller: Caller, arrivals: int) -> None:
    await service.ensure_streams()
    sent = await send_many(service, caller, "roadmap", 120)

    first = await service.read(caller, "roadmap", limit=50)
    assert seqs(first) == sent[-50:] and first.has_more and first.total == 120
    await send_many(service, caller, "roadmap", arrivals, start=1000)
    second = await service.read(caller, "roadmap", limit=50, cursor=first.next_cursor)
    third = await service.read(caller, "roadmap", limit=50, cursor=second.next_cursor)

    assert [len(p.messages) for p in (first, second, third)] == [50, 50, 20]
    assert seqs(second) == sent[20:70] and seqs(third) == sent[:20]
    assert second.has_more and second.total == 120 + arrivals
    assert (third.has_more, third.next_cursor) == (False, None)
    everything = seqs(third) + seqs(second) + seqs(first)
    assert everything == sent  # oldest->newest within pages, no repeat, nothing missing


async def test_past_the_oldest_message(service: ChannelService, caller: Caller) -> None:
    await service.ensure_streams()
    await send_many(service, caller, "roadmap", 20)
    exact = await service.read(caller, "roadmap", limit=20)
    assert len(exact.messages) == 20 and (exact.has_more, exact.next_cursor) == (False, None)

    # A cursor pointing at (or before) the oldest message: an empty last page, not the oldest again (Warp's bug).
    for before in (1, 2):
        cursor = make_cursor("warp_channels_read", NS, {"channel": "roadmap", "mode": "back"}, {"b": before})
        page = await service.read(make_caller(), "roadmap", cursor=cursor)
        assert seqs(page) == ([] if before == 1 else [1])
        assert (page.has_more, page.next_cursor) == (False, None)
    beyond = make_cursor("warp_channels_read", NS, {"channel": "roadmap", "mode": "back"}, {"b": 10**12})
    assert seqs(await service.read(caller, "roadmap", limit=5, cursor=beyond)) == [16, 17, 18, 19, 20]


async def test_empty_channel(service: ChannelService, caller: Caller) -> None:
    page = await service.read(caller, "roadmap")
    assert (page.messages, page.has_more, page.next_cursor, page.total) == ([], False, None, 0)
    polled = await service.read(caller, "roadmap", after_sequence=0)
    assert (polled.messages, polled.has_more, polled.next_cursor) == ([], False, None)


@pytest.mark.parametrize(
    ("deleted", "limit"),
    [
        ({1, 2, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 100, 119}, 50),  # front, interior run, singles
        (set(range(2, 121, 2)), 50),  # every other message: sparse windows
        (set(range(20, 91)), 50),  # a long run: jumped over
        (set(range(20, 91)), 7),
        ({120}, 50),  # the newest message
        (set(range(1, 120)), 10),  # only the newest is left
    ],
)
async def test_gaps_cause_no_repeats_and_nothing_missing(
    service: ChannelService, caller: Caller, nats_conn: NatsConnection, deleted: set[int], limit: int
) -> None:
    await service.ensure_streams()
    sent = await send_many(service, caller, "roadmap", 120)
    for seq in sorted(deleted):
        await nats_conn.jetstream.delete_msg(LAYOUT.channel_stream("roadmap"), seq)
    remaining = [s for s in sent if s not in deleted]

    out = nats_conn.client.stats["out_msgs"]
    pages = await page_back(service, caller, "roadmap", limit)
    requests = nats_conn.client.stats["out_msgs"] - out
    print(f"\n{len(deleted)} deleted, limit {limit}: {len(pages)} pages, {requests} requests")
    assert requests <= 5 * len(pages)  # stream info + a few windows or jumps per page, never one get per message
    collected = [s for page in reversed(pages) for s in seqs(page)]
    assert collected == remaining
    assert all(len(p.messages) == limit for p in pages[:-1])
    assert not pages[-1].has_more and all(p.has_more for p in pages[:-1])
    assert all(p.total == len(remaining) for p in pages)

    polled: list[int] = []
    page = await service.read(caller, "roadmap", limit=limit, after_sequence=0)
    polled += seqs(page)
    while page.next_cursor:
        page = await service.read(caller, "roadmap", limit=limit, after_sequence=0, cursor=page.next_cursor)
        polled += seqs(page)
    assert polled == remaining


async def test_front_trimmed_by_limits_between_pages(nats_conn: NatsConnection, caller: Caller) -> None:
    small = [ChannelSettings(name="roadmap", description="plans", max_messages=100)]
    svc = ChannelService(nats_conn, make_settings(nats_conn.settings, small), LAYOUT)
    await svc.ensure_streams()
    await send_many(svc, caller, "roadmap", 100)
    first = await svc.read(caller, "roadmap", limit=40)  # 61..100
    await send_many(svc, caller, "roadmap", 50, start=100)  # trims 1..50; 51..60 remain older than the page
    second = await svc.read(caller, "roadmap", limit=40, cursor=first.next_cursor)
    assert seqs(second) == list(range(51, 61))
    assert (second.has_more, second.next_cursor) == (False, None)


# -- polling forward -------------------------------------------------------------------------------------


async def test_after_sequence_polls_forward(service: ChannelService, caller: Caller) -> None:
    await service.ensure_streams()
    await send_many(service, caller, "roadmap", 10)
    one = await service.read(caller, "roadmap", limit=4, after_sequence=0)
    assert seqs(one) == [1, 2, 3, 4] and one.has_more and one.total == 10
    two = await service.read(caller, "roadmap", limit=4, after_sequence=0, cursor=one.next_cursor)
    assert seqs(two) == [5, 6, 7, 8] and two.has_more
    three = await service.read(caller, "roadmap", limit=4, after_sequence=0, cursor=two.next_cursor)
    assert seqs(three) == [9, 10] and (three.has_more, three.next_cursor) == (False, None)

    await send_many(service, caller, "roadmap", 3, start=10)
    assert seqs(await service.read(caller, "roadmap", after_sequence=10)) == [11, 12, 13]
    assert seqs(await service.read(caller, "roadmap", after_sequence=12)) == [13]
    beyond = await service.read(caller, "roadmap", after_sequence=13)
    assert (beyond.messages, beyond.has_more, beyond.next_cursor, beyond.total) == ([], False, None, 13)
    assert seqs(await service.read(caller, "roadmap", after_sequence=10_000)) == []


# -- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["road.map", "a.>", "UPPER", "has space", "", "*", "-lead", "x" * 64])
async def test_invalid_channel_names(
    service: ChannelService, caller: Caller, nats_conn: NatsConnection, name: str
) -> None:
    with pytest.raises(InvalidName):
        await service.send(caller, "alice", name, "hi")
    with pytest.raises(InvalidName):
        await service.read(caller, name)
    with pytest.raises(InvalidName):
        await service.status(name)
    assert await nats_conn.jetstream.streams_info() == []  # nothing written, not even a stream


async def test_unknown_channel_lists_the_configured_ones(service: ChannelService, caller: Caller) -> None:
    with pytest.raises(NotFound, match="configured channels: roadmap, errors, big"):
        await service.send(caller, "alice", "random", "hi")
    with pytest.raises(NotFound):
        await service.read(caller, "random")
    with pytest.raises(NotFound):
        await service.status("random")


async def test_bad_messages_are_refused_and_nothing_written(nats_conn: NatsConnection, caller: Caller) -> None:
    svc = ChannelService(nats_conn, make_settings(nats_conn.settings, message_bytes=1000), LAYOUT)
    await svc.ensure_streams()
    for empty in ("", "   ", "\n\t "):
        with pytest.raises(InvalidArgument):
            await svc.send(caller, "alice", "roadmap", empty)
    with pytest.raises(LimitExceeded):
        await svc.send(caller, "alice", "roadmap", "x" * 1001)
    with pytest.raises(LimitExceeded):
        await svc.send(caller, "alice", "roadmap", "é" * 501)  # 1002 UTF-8 bytes, 501 characters
    with pytest.raises(InvalidName):
        await svc.send(caller, "Not A Handle", "roadmap", "hi")
    with pytest.raises(InvalidArgument):
        await svc.send(caller, "alice", "roadmap", "hi", scope="everyone")  # type: ignore[arg-type]
    assert (await svc.status("roadmap"))[0].messages == 0
    assert (await svc.send(caller, "alice", "roadmap", "é" * 500)).sequence == 1  # exactly at the limit


async def test_payload_over_nats_max_is_refused(nats_conn: NatsConnection, caller: Caller) -> None:
    # JSON escaping grows control characters sixfold: within message_bytes, over NATS max_payload.
    svc = ChannelService(nats_conn, make_settings(nats_conn.settings, message_bytes=900 * 1024), LAYOUT)
    with pytest.raises(LimitExceeded, match="maximum payload"):
        await svc.send(caller, "alice", "roadmap", "\x01" * (300 * 1024))
    assert (await svc.status("roadmap"))[0].messages == 0


@pytest.mark.parametrize("limit", [0, -1, 1001, True, 2.5, "10"])
async def test_limit_out_of_range(service: ChannelService, caller: Caller, limit: object) -> None:
    with pytest.raises(InvalidArgument):
        await service.read(caller, "roadmap", limit=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("after", [-1, True, "3"])
async def test_after_sequence_invalid(service: ChannelService, caller: Caller, after: object) -> None:
    with pytest.raises(InvalidArgument):
        await service.read(caller, "roadmap", after_sequence=after)  # type: ignore[arg-type]


async def test_cursor_misuse(service: ChannelService, caller: Caller, nats_conn: NatsConnection) -> None:
    await service.ensure_streams()
    await send_many(service, caller, "roadmap", 5)
    back = (await service.read(caller, "roadmap", limit=2)).next_cursor
    forward = (await service.read(caller, "roadmap", limit=2, after_sequence=0)).next_cursor
    assert back and forward
    with pytest.raises(InvalidCursor):
        await service.read(caller, "errors", cursor=back)  # another channel
    with pytest.raises(InvalidCursor):
        await service.read(caller, "roadmap", cursor=back, after_sequence=0)  # another mode
    with pytest.raises(InvalidCursor):
        await service.read(caller, "roadmap", cursor=forward)
    with pytest.raises(InvalidCursor):
        await service.read(caller, "roadmap", cursor="garbage!")
    other_ns = ChannelService(nats_conn, service._settings, Layout("elsewhere"))
    with pytest.raises(InvalidCursor):
        await other_ns.read(caller, "roadmap", cursor=back)  # another namespace
    forged = make_cursor("warp_channels_read", NS, {"channel": "roadmap", "mode": "back"}, {"b": "3"})
    with pytest.raises(InvalidCursor):
        await service.read(caller, "roadmap", cursor=forged)
    forged = make_cursor("warp_registry_discover", NS, {"channel": "roadmap", "mode": "back"}, {"b": 3})
    with pytest.raises(InvalidCursor):
        await service.read(caller, "roadmap", cursor=forged)


# -- settings, status, availability -----------------------------------------------------------------------


async def test_settings_apply_to_existing_streams(nats_conn: NatsConnection, caller: Caller) -> None:
    before = [ChannelSettings(name="roadmap", description="plans", max_messages=100, max_age="24h")]
    svc = ChannelService(nats_conn, make_settings(nats_conn.settings, before), LAYOUT)
    await svc.ensure_streams()
    await send_many(svc, caller, "roadmap", 30)

    after = [ChannelSettings(name="roadmap", description="plans", max_messages=10, max_age="30s")]
    svc2 = ChannelService(nats_conn, make_settings(nats_conn.settings, after), LAYOUT)
    await svc2.ensure_streams()
    info = await nats_conn.jetstream.stream_info(LAYOUT.channel_stream("roadmap"))
    assert (info.config.max_msgs, info.config.max_age, info.config.duplicate_window) == (10, 30, 30)
    assert (info.state.messages, info.state.first_seq, info.state.last_seq) == (10, 21, 30)
    page = await svc2.read(caller, "roadmap", limit=50)
    assert seqs(page) == list(range(21, 31)) and not page.has_more and page.total == 10
    await svc2.ensure_streams()  # idempotent


async def test_status(service: ChannelService, caller: Caller, nats_conn: NatsConnection) -> None:
    assert [s.model_dump() for s in await service.status()] == [
        {"name": n, "messages": 0, "bytes": 0, "firstSequence": 0, "lastSequence": 0}
        for n in ("roadmap", "errors", "big")
    ]  # no stream yet: zeros, not an error
    await send_many(service, caller, "errors", 5)
    await nats_conn.jetstream.delete_msg(LAYOUT.channel_stream("errors"), 1)
    (one,) = await service.status("errors")
    assert (one.name, one.messages, one.firstSequence, one.lastSequence) == ("errors", 4, 2, 5)
    assert one.bytes > 0
    assert [s.name for s in await service.status()] == ["roadmap", "errors", "big"]


def test_list_comes_from_settings(service: ChannelService) -> None:
    listed = service.list()
    assert [c.name for c in listed] == ["roadmap", "errors", "big"]
    assert listed[0].model_dump() == {
        "name": "roadmap",
        "description": "plans",
        "maxMessages": 10_000,
        "maxBytes": 10 * 1024 * 1024,
        "maxAge": "24h",
    }


async def test_stream_deleted_behind_our_back(
    service: ChannelService, caller: Caller, nats_conn: NatsConnection
) -> None:
    await service.ensure_streams()
    await send_many(service, caller, "roadmap", 3)
    await nats_conn.jetstream.delete_stream(LAYOUT.channel_stream("roadmap"))
    assert (await service.read(caller, "roadmap", after_sequence=0)).messages == []
    await nats_conn.jetstream.delete_stream(LAYOUT.channel_stream("roadmap"))
    assert (await service.send(caller, "alice", "roadmap", "again")).sequence == 1
    await nats_conn.jetstream.delete_stream(LAYOUT.channel_stream("roadmap"))
    assert (await service.read(caller, "roadmap")).messages == []


async def test_nats_unavailable_propagates(tmp_path: Path, caller: Caller) -> None:
    conn = NatsConnection(settings_for(tmp_path, NATS_URL="nats://127.0.0.1:1"))  # never started
    svc = ChannelService(conn, make_settings(conn.settings), LAYOUT)
    with pytest.raises(NatsUnavailableError):
        await svc.ensure_streams()
    with pytest.raises(NatsUnavailableError):
        await svc.send(caller, "alice", "roadmap", "hi")
    with pytest.raises(NatsUnavailableError):
        await svc.read(caller, "roadmap")
    with pytest.raises(NatsUnavailableError):
        await svc.status()
    assert len(svc.list()) == 3  # configuration needs no NATS


# -- the direct-get protocol --------------------------------------------------------------------------------


async def test_batched_direct_get_protocol(service: ChannelService, caller: Caller, nats_conn: NatsConnection) -> None:
    await service.ensure_streams()
    await send_many(service, caller, "roadmap", 10)
    stream, subject, nc = LAYOUT.channel_stream("roadmap"), LAYOUT.channel_subject("roadmap"), nats_conn.client
    for seq in (3, 4, 9):
        await nats_conn.jetstream.delete_msg(stream, seq)

    batch = await get_batch(nc, stream, 2, 3)
    assert [m.seq for m in batch.messages] == [2, 5, 6] and batch.pending == 3  # 7, 8, 10 follow
    assert all(m.subject == subject and m.time.endswith("Z") for m in batch.messages)
    assert json.loads(batch.messages[0].data)["message"] == "msg 1"
    assert (await get_batch(nc, stream, 11, 5)).messages == []  # 404: nothing at or after
    assert [m.seq for m in (await get_batch(nc, stream, 3, 100)).messages] == [5, 6, 7, 8, 10]

    assert (found := await last_at_or_before(nc, stream, subject, 4)) is not None and found.seq == 2
    assert (found := await last_at_or_before(nc, stream, subject, 10)) is not None and found.seq == 10
    assert await last_at_or_before(nc, stream, subject, 11) is None  # above the last sequence: "404 No Results"
    await nats_conn.jetstream.delete_msg(stream, 1)
    assert await last_at_or_before(nc, stream, subject, 1) is None


# -- cost ----------------------------------------------------------------------------------------------------


async def requests_per_read(svc: ChannelService, caller: Caller, conn: NatsConnection, **kw: object) -> tuple[int, int]:
    """(messages sent, messages received) on the connection for one read: round trips, counted not timed."""
    stats = conn.client.stats
    out, received = stats["out_msgs"], stats["in_msgs"]
    await svc.read(caller, "big", **kw)  # type: ignore[arg-type]
    return stats["out_msgs"] - out, stats["in_msgs"] - received


async def test_read_cost_does_not_grow_with_history(
    service: ChannelService, caller: Caller, nats_conn: NatsConnection
) -> None:
    await service.ensure_streams()
    counts = []
    for add in (1_000, 19_000):
        await fill_raw(nats_conn, "big", add)
        cursor = (await service.read(caller, "big", limit=50)).next_cursor
        counts += [
            await requests_per_read(service, caller, nats_conn, limit=50),
            await requests_per_read(service, caller, nats_conn, limit=50, cursor=cursor),
            await requests_per_read(service, caller, nats_conn, limit=50, after_sequence=500),
        ]
    # Two requests (stream info, one batch) and 50 messages + end-of-batch + info reply, whatever the history.
    assert counts == [(2, 52)] * 6


async def test_the_newest_page_is_right_whatever_the_history(
    service: ChannelService, caller: Caller, nats_conn: NatsConnection
) -> None:
    """The newest page of 50 and the page behind it, at 1,000 and at 20,000 messages of history. (How long a read
    takes against history length is measured in bench/channels_read.py, not here: that test only printed it.)"""
    await service.ensure_streams()
    for channel, n in (("errors", 1_000), ("big", 20_000)):
        await fill_raw(nats_conn, channel, n)
        newest = await service.read(caller, channel, limit=50)
        assert seqs(newest) == list(range(n - 49, n + 1)) and newest.total == n and newest.has_more
        behind = await service.read(caller, channel, limit=50, cursor=newest.next_cursor)
        assert seqs(behind) == list(range(n - 99, n - 49))
