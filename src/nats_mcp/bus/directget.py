"""The JetStream direct-get boundary: read many stored messages of a stream in one round trip.

nats-py only wraps single-message direct gets, so the batched form (ADR-31, nats-server >= 2.11) is
spoken here. One request to ``$JS.API.DIRECT.GET.<stream>`` with ``{"seq": N, "batch": K}`` makes
the server send, on the reply subject, up to K stored messages with sequence >= N (deleted sequences
are skipped), each with the headers ``Nats-Stream``, ``Nats-Subject``, ``Nats-Sequence``,
``Nats-Time-Stamp``, ``Nats-Num-Pending`` (messages after this one) and ``Nats-Last-Sequence`` (the
sequence of the previous message of this batch, 0 for the first), then an end-of-batch status
message ``204 EOB`` carrying ``Nats-Num-Pending`` and ``Nats-Last-Sequence``. ``"next_by_subj": S``
keeps only messages on subject S (wildcards allowed; ``Nats-Num-Pending`` then counts matches only);
``"max_bytes": B`` ends the batch once B bytes of messages are sent (at least one message is always
sent). When nothing is at or after N the server sends only ``404 Message Not Found``; ``408`` means a
malformed request; ``503`` (no responders) means the stream does not exist or does not allow direct
gets (:func:`nats_mcp.bus.streamops.get_next` reads through the stream API instead). A server without
batch support (nats-server < 2.11) answers a batch request with one message, without
``Nats-Num-Pending`` and without an end-of-batch.
``{"multi_last": [subject], "up_to_seq": N, "batch": 1}`` returns the newest message of the subject
at or before N (its end-of-batch also carries ``Nats-UpTo-Sequence``); N above the last sequence gets
``404 No Results`` and N = 0 means no bound.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from nats_mcp.bus.errors import BusError

STATUS = "Status"
DESCRIPTION = "Description"
SEQUENCE = "Nats-Sequence"
SUBJECT = "Nats-Subject"
TIME_STAMP = "Nats-Time-Stamp"
NUM_PENDING = "Nats-Num-Pending"
LAST_SEQUENCE = "Nats-Last-Sequence"
MSG_ID = "Nats-Msg-Id"

END_OF_BATCH = "204"
NOT_FOUND = "404"
NO_RESPONDERS = "503"


class DirectGetError(BusError):
    """The server answered a direct get with an error status, or the batch arrived incomplete."""


class DirectGetUnavailable(DirectGetError):
    """No responders: the stream does not exist (or does not allow direct gets)."""

    code = "not_found"


@dataclass(frozen=True, slots=True)
class StoredMsg:
    """One stored message as a direct get returns it."""

    seq: int
    subject: str
    data: bytes
    time: str
    msg_id: str | None = None
    """Its ``Nats-Msg-Id`` header (batched direct gets only)."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Messages in sequence order, and how many stored messages (matching the request) come after them.

    ``complete`` is False only for a ``partial=True`` request that stopped short: a message went missing in
    transit (the batch is then the unbroken prefix before the gap), or the server answered one message
    instead of a batch. More may then follow whatever ``pending`` says (it is 0: not known).
    """

    messages: list[StoredMsg]
    pending: int
    complete: bool = True

    @property
    def at_end(self) -> bool:
        """Nothing matching the request was stored after these messages when the server answered."""
        return self.complete and self.pending == 0


def api_prefix(domain: str | None = None) -> str:
    """The JetStream API subject prefix (``$JS.API``, or ``$JS.<domain>.API`` for a JetStream domain)."""
    return f"$JS.{domain}.API" if domain else "$JS.API"


async def get_batch(
    nc: Client,
    stream: str,
    seq: int,
    batch: int,
    *,
    subject: str | None = None,
    max_bytes: int | None = None,
    partial: bool = False,
    prefix: str = "$JS.API",
    timeout: float = 5.0,
) -> Batch:
    """Up to ``batch`` stored messages with sequence >= ``seq``, oldest first, in one round trip.

    ``subject`` keeps only messages on that subject (wildcards allowed); ``max_bytes`` caps the batch's
    size (the server still sends at least one message). A message lost in transit (the reply subscription
    overflowed) raises :class:`DirectGetError`, as does a server that answers one message instead of a
    batch; with ``partial`` both give an incomplete batch instead: the messages up to the gap, never one
    past it. A stream that does not exist or denies direct gets raises :class:`DirectGetUnavailable`.
    """
    if seq < 1 or batch < 1:
        raise ValueError("seq and batch must be at least 1")
    if max_bytes is not None and max_bytes < 1:
        raise ValueError("max_bytes must be at least 1")
    request: dict[str, Any] = {"seq": seq, "batch": batch}
    if subject is not None:
        request["next_by_subj"] = subject
    if max_bytes is not None:
        request["max_bytes"] = max_bytes
    return await _request(nc, f"{prefix}.DIRECT.GET.{stream}", request, timeout, partial)


async def last_at_or_before(
    nc: Client, stream: str, subject: str, seq: int, *, prefix: str = "$JS.API", timeout: float = 5.0
) -> StoredMsg | None:
    """The newest stored message on ``subject`` with sequence <= ``seq`` (None if there is none).

    ``seq`` must not exceed the stream's last sequence: above it the server answers ``404 No Results``.
    """
    if seq < 1:
        return None  # up_to_seq 0 would mean "no bound" to the server
    request = {"multi_last": [subject], "up_to_seq": seq, "batch": 1}
    found = await _request(nc, f"{prefix}.DIRECT.GET.{stream}", request, timeout, partial=False)
    return found.messages[-1] if found.messages else None


async def last_per_subject(
    nc: Client, stream: str, subjects: str, *, limit: int = 1024, prefix: str = "$JS.API", timeout: float = 5.0
) -> list[StoredMsg]:
    """The newest stored message of each subject matching ``subjects`` (a wildcard), at most ``limit`` of them.

    The replies of a ``multi_last`` batch are not one run of the stream (each names the sequence of the reply
    before it, which need not be its predecessor in the stream), so they are taken as they come, until the
    end-of-batch; an answer of one message without it is one subject's newest.
    """
    api_subject = f"{prefix}.DIRECT.GET.{stream}"
    collector = await _exchange(nc, api_subject, {"multi_last": [subjects], "batch": limit}, timeout, chained=False)
    end = collector.end or {}
    status = end.get(STATUS, END_OF_BATCH)
    if status == NOT_FOUND:
        return []
    if status == NO_RESPONDERS:
        raise DirectGetUnavailable(f"no responders for {api_subject}: the stream does not exist or denies direct gets")
    if status != END_OF_BATCH:
        raise DirectGetError(f"direct get on {api_subject} failed: {status} {end.get(DESCRIPTION, '')}".rstrip())
    return collector.messages


async def _request(nc: Client, api_subject: str, request: dict[str, Any], timeout: float, partial: bool) -> Batch:
    return _finish(api_subject, await _exchange(nc, api_subject, request, timeout), partial)


async def _exchange(
    nc: Client, api_subject: str, request: dict[str, Any], timeout: float, *, chained: bool = True
) -> _Collector:
    """Send one direct-get request and collect its replies until the batch ends (or the first reply of a server
    without batches)."""
    collector = _Collector(chained)
    replies = await _replies_of(nc)
    if replies is None:  # a plain nats-py client: a subscription of its own for this batch
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=collector.on_msg)
    else:
        inbox = replies.expect(collector)
    try:
        await nc.publish(api_subject, json.dumps(request).encode(), reply=inbox)
        async with asyncio.timeout(timeout):
            await collector.done
    except TimeoutError:
        raise nats.errors.TimeoutError from None
    finally:
        if replies is None:
            await sub.unsubscribe()
        else:
            replies.forget(inbox)
    return collector


class _Replies:
    """One wildcard reply subscription per connection for every batch, its messages filed in the read loop.

    A subscription per batch cost a SUB and an UNSUB, a task, and a task hop per message (50 for a channel page);
    here the connection hands each reply straight to the collector its inbox names (bus/connection.py's
    ``deliver_inline``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._waiting: dict[str, _Collector] = {}
        self._next = 0

    def expect(self, collector: _Collector) -> str:
        self._next += 1
        inbox = f"{self.prefix}{self._next}"
        self._waiting[inbox] = collector
        return inbox

    def forget(self, inbox: str) -> None:
        self._waiting.pop(inbox, None)

    def deliver(self, subject: bytes, data: bytes, headers: dict[str, str] | None) -> None:
        collector = self._waiting.get(subject.decode())
        if collector is not None:
            collector.take(data, headers or {})


_REPLIES = "_nmcp_direct_replies"


async def _replies_of(nc: Client) -> _Replies | None:
    """The connection's reply subscription (made on first use), or None for a client that cannot file inline."""
    deliver_inline = getattr(nc, "deliver_inline", None)
    if deliver_inline is None:
        return None
    made: asyncio.Future[_Replies] | None = getattr(nc, _REPLIES, None)
    if made is None:
        made = asyncio.get_running_loop().create_future()
        setattr(nc, _REPLIES, made)
        try:
            prefix = nc.new_inbox() + "."
            sub = await nc.subscribe(prefix + "*")
            replies = _Replies(prefix)
            deliver_inline(sub._id, replies.deliver)
            made.set_result(replies)
        except BaseException as exc:
            delattr(nc, _REPLIES)  # the next batch tries again
            made.set_exception(exc)
            made.exception()  # retrieved: concurrent waiters get it through their await
            raise
    return await asyncio.shield(made)


class _Collector:
    """Gathers a batch's messages until its closing status message, a gap, or a reply that is not a batch."""

    def __init__(self, chained: bool = True) -> None:
        self.chained = chained
        """Whether each reply names its predecessor in the batch (a gap is then detected)."""
        self.messages: list[StoredMsg] = []
        self.end: dict[str, str] | None = None
        """Headers of the closing status message, if one arrived."""
        self.gap_before: int | None = None
        """Sequence of the first message whose predecessor in the batch never arrived (slow consumer)."""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_msg(self, msg: Msg) -> None:
        self.take(msg.data, msg.headers or {})

    def take(self, data: bytes, headers: dict[str, str]) -> None:
        if self.done.done():
            return
        # A stored message always carries Nats-Sequence (and may carry any header of its own, even "Status").
        if STATUS in headers and SEQUENCE not in headers:
            self.end = headers
        elif self.chained and not self.follows_on(headers):
            self.gap_before = int(headers[SEQUENCE])
        else:
            self.messages.append(_stored(data, headers))
            if NUM_PENDING in headers:
                return
            # else: a server without batch support answers one message and no end-of-batch
        self.done.set_result(None)

    def follows_on(self, headers: dict[str, str]) -> bool:
        """Every batched reply names its predecessor in the batch: a dropped message is detected, not hidden."""
        previous = self.messages[-1].seq if self.messages else 0
        return int(headers.get(LAST_SEQUENCE, previous)) == previous


def _finish(api_subject: str, collector: _Collector, partial: bool) -> Batch:
    messages, end = collector.messages, collector.end
    if end is not None:
        status = end.get(STATUS, "")
        if status == NOT_FOUND and not messages:
            return Batch([], 0)
        if status == NO_RESPONDERS:
            raise DirectGetUnavailable(
                f"no responders for {api_subject}: the stream does not exist or denies direct gets"
            )
        if status != END_OF_BATCH:
            raise DirectGetError(f"direct get on {api_subject} failed: {status} {end.get(DESCRIPTION, '')}".rstrip())
        if collector.follows_on(end):
            return Batch(messages, int(end.get(NUM_PENDING, "0")))
        problem = "lost messages at the end of the batch"
    elif collector.gap_before is not None:
        problem = f"lost a message before sequence {collector.gap_before}"
    else:
        problem = "got one message, not a batch (batched direct gets need nats-server 2.11 or later)"
    if partial:
        return Batch(messages, 0, complete=False)
    raise DirectGetError(f"direct get on {api_subject} {problem}")


def _stored(data: bytes, headers: dict[str, str]) -> StoredMsg:
    return StoredMsg(
        seq=int(headers[SEQUENCE]),
        subject=headers.get(SUBJECT, ""),
        data=data,
        time=headers.get(TIME_STAMP, ""),
        msg_id=headers.get(MSG_ID),
    )
