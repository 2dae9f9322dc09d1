"""The bus's direct-get and stream-op primitives against a real nats-server (and a scripted responder where the
server cannot be made to misbehave): subject filters, byte caps, gaps in transit, deletes that lose the race."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import APIError

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import DirectGetError, DirectGetUnavailable, StoredMsg, get_batch
from nats_mcp.bus.streamops import already_gone, delete_msg, delete_msgs, get_next
from tests.support.natsserver import NatsServer, wait_for

STREAM = "DG"
PAYLOAD = b"x" * 100


@pytest.fixture
async def stream(nats_conn: NatsConnection) -> str:
    """Stream DG over ``dg.>``: seq 1..9 on dg.a, dg.b, dg.c.deep in turn, 100-byte payloads."""
    js = nats_conn.jetstream
    await js.add_stream(StreamConfig(name=STREAM, subjects=["dg.>"], allow_direct=True))
    for i in range(9):
        await js.publish(("dg.a", "dg.b", "dg.c.deep")[i % 3], PAYLOAD)
    return STREAM


def seqs(messages: list[StoredMsg]) -> list[int]:
    return [m.seq for m in messages]


# -- next_by_subj and max_bytes -----------------------------------------------------------------------------


async def test_subject_filter_returns_only_matches_and_counts_only_matches(
    nats_conn: NatsConnection, stream: str
) -> None:
    nc = nats_conn.client
    batch = await get_batch(nc, stream, 1, 2, subject="dg.a")
    assert seqs(batch.messages) == [1, 4] and batch.pending == 1 and batch.complete and not batch.at_end
    assert all(m.subject == "dg.a" for m in batch.messages)
    rest = await get_batch(nc, stream, 5, 10, subject="dg.a")
    assert seqs(rest.messages) == [7] and rest.pending == 0 and rest.at_end

    assert seqs((await get_batch(nc, stream, 2, 3, subject="dg.*")).messages) == [2, 4, 5]  # dg.c.deep: no match
    assert seqs((await get_batch(nc, stream, 1, 100, subject="dg.c.>")).messages) == [3, 6, 9]
    empty = await get_batch(nc, stream, 1, 10, subject="dg.none")
    assert empty.messages == [] and empty.at_end  # 404: nothing on the subject
    assert (await get_batch(nc, stream, 8, 10, subject="dg.a")).messages == []  # nothing at or after 8


async def test_max_bytes_caps_the_batch_but_never_below_one_message(nats_conn: NatsConnection, stream: str) -> None:
    nc = nats_conn.client
    capped = await get_batch(nc, stream, 1, 9, max_bytes=250)
    assert 1 <= len(capped.messages) < 9 and capped.complete
    assert capped.pending == 9 - len(capped.messages)  # the end-of-batch counts what the cap left behind
    one = await get_batch(nc, stream, 1, 9, max_bytes=1)
    assert seqs(one.messages) == [1] and one.pending == 8
    both = await get_batch(nc, stream, 1, 9, subject="dg.b", max_bytes=1)
    assert seqs(both.messages) == [2] and both.pending == 2
    with pytest.raises(ValueError, match="max_bytes"):
        await get_batch(nc, stream, 1, 9, max_bytes=0)


async def test_batches_share_one_inline_reply_subscription_and_a_plain_client_reads_the_same(
    nats_conn: NatsConnection, nats_server: NatsServer, stream: str
) -> None:
    nc = nats_conn.client
    await get_batch(nc, stream, 1, 1)  # makes the connection's reply subscription
    subscriptions = len(nc._subs)
    got = await asyncio.gather(*(get_batch(nc, stream, first, 3) for first in range(1, 8)))
    assert [seqs(b.messages) for b in got] == [[s, s + 1, s + 2] for s in range(1, 8)]  # each inbox its own batch
    asked: list[Msg] = []

    async def take(msg: Msg) -> None:
        asked.append(msg)  # takes the request, never answers

    silent = await nc.subscribe("$JS.NOWHERE.API.DIRECT.GET.SILENT", cb=take)
    waiting = [
        asyncio.ensure_future(get_batch(nc, "SILENT", 1, 2, prefix="$JS.NOWHERE.API", timeout=2)) for _ in range(3)
    ]
    await wait_for(lambda: len(asked) == 3, 10)
    assert len(nc._subs) == subscriptions + 1  # the responder's: no subscription per batch (SUB, UNSUB, a task each)
    for each in waiting:
        with pytest.raises(nats.errors.TimeoutError):
            await each
    assert not nc._nmcp_direct_replies.result()._waiting  # type: ignore[attr-defined]  # the collectors forgotten
    await silent.unsubscribe()
    plain = await nats.connect(nats_server.url)  # nats-py's own client: a subscription per batch, as before
    try:
        assert [seqs((await get_batch(plain, stream, s, 3)).messages) for s in range(1, 8)] == [
            seqs(b.messages) for b in got
        ]
    finally:
        await plain.close()


async def test_missing_stream_or_no_direct_gets_is_unavailable(nats_conn: NatsConnection, stream: str) -> None:
    nc = nats_conn.client
    with pytest.raises(DirectGetUnavailable):
        await get_batch(nc, "NO_SUCH_STREAM", 1, 5, subject="dg.a")
    config = (await nats_conn.jetstream.stream_info(stream)).config
    await nats_conn.jetstream.update_stream(replace(config, allow_direct=False))
    with pytest.raises(DirectGetUnavailable):
        await get_batch(nc, stream, 1, 5, subject="dg.a", partial=True)


# -- gaps in transit (scripted responder: a real server only drops replies on a slow consumer) ----------------


def stored(seq: int, last: int | None, pending: int | None = 0, **extra: str) -> tuple[dict[str, str], bytes]:
    headers = {"Nats-Stream": "FAKE", "Nats-Subject": "dg.a", "Nats-Sequence": str(seq), **extra}
    headers["Nats-Time-Stamp"] = "2026-01-01T00:00:00Z"
    if pending is not None:
        headers["Nats-Num-Pending"] = str(pending)
    if last is not None:
        headers["Nats-Last-Sequence"] = str(last)
    return headers, f"m{seq}".encode()


def end(last: int, pending: int = 0) -> tuple[dict[str, str], bytes]:
    return {
        "Status": "204",
        "Description": "EOB",
        "Nats-Num-Pending": str(pending),
        "Nats-Last-Sequence": str(last),
    }, b""


class Scripted:
    """Answers direct gets on stream FAKE (which does not exist) with the replies it is given."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.replies: list[tuple[dict[str, str], bytes]] = []
        self.requests: list[dict[str, object]] = []

    async def serve(self, msg: Msg) -> None:
        self.requests.append(json.loads(msg.data))
        for headers, data in self.replies:
            await self.nc.publish(msg.reply, data, headers=headers)


@pytest.fixture
async def scripted(nats_conn: NatsConnection) -> AsyncIterator[Scripted]:
    responder = Scripted(nats_conn.client)
    sub = await nats_conn.client.subscribe("$JS.API.DIRECT.GET.FAKE", cb=responder.serve)
    yield responder
    await sub.unsubscribe()


async def fake_get(nc: Client, *, partial: bool, timeout: float = 5.0) -> tuple[list[int], bool, int]:
    batch = await get_batch(nc, "FAKE", 1, 10, subject="dg.a", partial=partial, timeout=timeout)
    return seqs(batch.messages), batch.complete, batch.pending


async def test_request_carries_the_filter_and_cap_only_when_given(
    nats_conn: NatsConnection, scripted: Scripted
) -> None:
    scripted.replies = [stored(1, 0, pending=0), end(1)]
    await get_batch(nats_conn.client, "FAKE", 1, 10, subject="dg.>", max_bytes=4096)
    await get_batch(nats_conn.client, "FAKE", 7, 3)
    assert scripted.requests == [
        {"seq": 1, "batch": 10, "next_by_subj": "dg.>", "max_bytes": 4096},
        {"seq": 7, "batch": 3},
    ]


async def test_a_lost_message_keeps_the_unbroken_prefix_or_raises(
    nats_conn: NatsConnection, scripted: Scripted
) -> None:
    nc = nats_conn.client
    scripted.replies = [stored(1, 0, pending=3), stored(3, 2, pending=1), stored(4, 3), end(4)]  # 2 was lost
    assert await fake_get(nc, partial=True) == ([1], False, 0)  # nothing past the gap, not even 3 and 4
    with pytest.raises(DirectGetError, match="lost a message before sequence 3"):
        await fake_get(nc, partial=False)

    scripted.replies = [stored(2, 1, pending=0), end(2)]  # the first message was lost
    assert await fake_get(nc, partial=True) == ([], False, 0)

    scripted.replies = [stored(1, 0, pending=1), end(2)]  # the last message was lost
    assert await fake_get(nc, partial=True) == ([1], False, 0)
    with pytest.raises(DirectGetError, match="lost messages at the end"):
        await fake_get(nc, partial=False)

    scripted.replies = [stored(1, 0, pending=2), stored(5, 1, pending=1), end(5, pending=1)]  # intact
    assert await fake_get(nc, partial=True) == ([1, 5], True, 1)
    assert await fake_get(nc, partial=False) == ([1, 5], True, 1)


async def test_a_server_without_batches_answers_one_message(nats_conn: NatsConnection, scripted: Scripted) -> None:
    """nats-server < 2.11 ignores ``batch``: one message, no Nats-Num-Pending, no end-of-batch."""
    nc = nats_conn.client
    scripted.replies = [stored(1, None, pending=None)]
    assert await fake_get(nc, partial=True) == ([1], False, 0)
    started = time.perf_counter()
    with pytest.raises(DirectGetError, match="not a batch"):
        await fake_get(nc, partial=False, timeout=30.0)
    # A robustness limit, not a speed target: told at once, where a reader that waited for an end-of-batch would
    # only fail after its whole 30 s timeout; half of it tells the two apart on any machine.
    assert time.perf_counter() - started < 15.0


async def test_a_stored_message_with_its_own_status_header_is_a_message(
    nats_conn: NatsConnection, scripted: Scripted
) -> None:
    scripted.replies = [stored(1, 0, pending=1, Status="500"), stored(2, 1), end(2)]
    assert await fake_get(nats_conn.client, partial=False) == ([1, 2], True, 0)


async def test_error_statuses(nats_conn: NatsConnection, scripted: Scripted) -> None:
    scripted.replies = [({"Status": "408", "Description": "Bad Request"}, b"")]
    with pytest.raises(DirectGetError, match="408 Bad Request") as info:
        await fake_get(nats_conn.client, partial=True)
    assert not isinstance(info.value, DirectGetUnavailable)


# -- delete as claim -----------------------------------------------------------------------------------------


async def test_delete_is_true_once_then_already_gone(nats_conn: NatsConnection, stream: str) -> None:
    nc = nats_conn.client
    assert await delete_msg(nc, stream, 1) is True
    assert await delete_msg(nc, stream, 1) is False  # file storage: 500 / 10057 "no message found"
    assert await delete_msg(nc, stream, 2, erase=True) is True
    assert seqs((await get_batch(nc, stream, 1, 3)).messages) == [3, 4, 5]
    assert await delete_msg(nc, "NO_SUCH_STREAM", 1) is False  # 404 / 10059
    with pytest.raises(APIError) as info:
        await delete_msg(nc, stream, 99)  # past the end: 500 / 10057 "stream store EOF" is not "gone"
    assert (info.value.code, info.value.err_code) == (500, 10057)


async def test_delete_on_memory_storage_is_already_gone_too(nats_conn: NatsConnection) -> None:
    await nats_conn.jetstream.add_stream(StreamConfig(name="DGMEM", subjects=["mem.>"], storage=StorageType.MEMORY))
    await nats_conn.jetstream.publish("mem.a", b"x")
    assert await delete_msg(nats_conn.client, "DGMEM", 1) is True
    assert await delete_msg(nats_conn.client, "DGMEM", 1) is False  # 400 / 10043 "sequence 1 not found"


async def test_concurrent_deletes_of_one_message_succeed_once(nats_conn: NatsConnection, stream: str) -> None:
    outcomes = await delete_msgs(nats_conn.client, stream, [5] * 8 + [6])
    assert outcomes.count(True) == 2 and outcomes.count(False) == 7
    failed = await delete_msgs(nats_conn.client, stream, [7, 99])
    assert failed[0] is True and isinstance(failed[1], APIError)  # errors are returned, not raised


@pytest.mark.parametrize(
    ("error", "gone"),
    [
        ({"code": 500, "err_code": 10057, "description": "no message found"}, True),
        ({"code": 400, "err_code": 10043, "description": "sequence 7 not found"}, True),
        ({"code": 404, "err_code": 10037, "description": "no message found"}, True),
        ({"code": 404, "err_code": 10059, "description": "stream not found"}, True),
        ({"code": 500, "err_code": 10057, "description": "stream store EOF"}, False),
        ({"code": 503, "err_code": 10008, "description": "JetStream system temporarily unavailable"}, False),
        ({}, False),
    ],
)
def test_already_gone_classification(error: dict[str, object], gone: bool) -> None:
    assert already_gone(error) is gone


# -- the stream-API fallback ---------------------------------------------------------------------------------


async def test_get_next_reads_without_direct_gets(nats_conn: NatsConnection, stream: str) -> None:
    nc = nats_conn.client
    config = (await nats_conn.jetstream.stream_info(stream)).config
    await nats_conn.jetstream.update_stream(replace(config, allow_direct=False))
    found = await get_next(nc, stream, 2, "dg.a")
    assert found is not None and (found.seq, found.subject, found.data) == (4, "dg.a", PAYLOAD)
    assert found.time.endswith("Z")
    deep = await get_next(nc, stream, 1, "dg.c.>")
    assert deep is not None and deep.seq == 3
    assert await get_next(nc, stream, 8, "dg.a") is None  # 404 / 10037
    assert await get_next(nc, "NO_SUCH_STREAM", 1, "dg.a") is None  # 404 / 10059


async def test_concurrent_batches_do_not_mix(nats_conn: NatsConnection, stream: str) -> None:
    nc = nats_conn.client
    batches = await asyncio.gather(*(get_batch(nc, stream, 1, 9, subject=s) for s in ("dg.a", "dg.b", "dg.c.deep")))
    assert [seqs(b.messages) for b in batches] == [[1, 4, 7], [2, 5, 8], [3, 6, 9]]
