"""The JetStream direct-get boundary: read many stored messages of a stream in one round trip.

nats-py only wraps single-message direct gets, so the batched form (ADR-31, nats-server >= 2.11) is
spoken here. One request to ``$JS.API.DIRECT.GET.<stream>`` with ``{"seq": N, "batch": K}`` makes
the server send, on the reply subject, up to K stored messages with sequence >= N (deleted sequences
are skipped), each with the headers ``Nats-Stream``, ``Nats-Subject``, ``Nats-Sequence``,
``Nats-Time-Stamp``, ``Nats-Num-Pending`` (messages after this one) and ``Nats-Last-Sequence`` (the
sequence of the previous message of this batch, 0 for the first), then an end-of-batch status
message ``204 EOB`` carrying ``Nats-Num-Pending`` and ``Nats-Last-Sequence``. When nothing is at or
after N the server sends only ``404 Message Not Found``; ``408`` means a malformed request; ``503``
(no responders) means the stream does not exist or does not allow direct gets.
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


@dataclass(frozen=True, slots=True)
class Batch:
    """Messages in sequence order, and how many stored messages (matching the request) come after them."""

    messages: list[StoredMsg]
    pending: int


def api_prefix(domain: str | None = None) -> str:
    """The JetStream API subject prefix (``$JS.API``, or ``$JS.<domain>.API`` for a JetStream domain)."""
    return f"$JS.{domain}.API" if domain else "$JS.API"


async def get_batch(
    nc: Client, stream: str, seq: int, batch: int, *, prefix: str = "$JS.API", timeout: float = 5.0
) -> Batch:
    """Up to ``batch`` stored messages with sequence >= ``seq``, oldest first, in one round trip."""
    if seq < 1 or batch < 1:
        raise ValueError("seq and batch must be at least 1")
    return await _request(nc, f"{prefix}.DIRECT.GET.{stream}", {"seq": seq, "batch": batch}, timeout)


async def last_at_or_before(
    nc: Client, stream: str, subject: str, seq: int, *, prefix: str = "$JS.API", timeout: float = 5.0
) -> StoredMsg | None:
    """The newest stored message on ``subject`` with sequence <= ``seq`` (None if there is none).

    ``seq`` must not exceed the stream's last sequence: above it the server answers ``404 No Results``.
    """
    if seq < 1:
        return None  # up_to_seq 0 would mean "no bound" to the server
    request = {"multi_last": [subject], "up_to_seq": seq, "batch": 1}
    found = await _request(nc, f"{prefix}.DIRECT.GET.{stream}", request, timeout)
    return found.messages[-1] if found.messages else None


async def _request(nc: Client, api_subject: str, request: dict[str, Any], timeout: float) -> Batch:
    collector = _Collector()
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=collector.on_msg)
    try:
        await nc.publish(api_subject, json.dumps(request).encode(), reply=inbox)
        async with asyncio.timeout(timeout):
            end = await collector.done
    except TimeoutError:
        raise nats.errors.TimeoutError from None
    finally:
        await sub.unsubscribe()
    return _finish(api_subject, collector.messages, end)


class _Collector:
    """Gathers a batch's messages until its closing status message arrives."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self.done: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

    async def on_msg(self, msg: Msg) -> None:
        if self.done.done():
            return
        # A stored message always carries Nats-Sequence (and may carry any header of its own, even "Status").
        if msg.headers and STATUS in msg.headers and SEQUENCE not in msg.headers:
            self.done.set_result(msg)
        else:
            self.messages.append(msg)


def _finish(api_subject: str, raw: list[Msg], end: Msg) -> Batch:
    headers = end.headers or {}
    status = headers.get(STATUS, "")
    if status == NOT_FOUND and not raw:
        return Batch([], 0)
    if status == NO_RESPONDERS:
        raise DirectGetUnavailable(f"no responders for {api_subject}: the stream does not exist or denies direct gets")
    if status != END_OF_BATCH:
        raise DirectGetError(f"direct get on {api_subject} failed: {status} {headers.get(DESCRIPTION, '')}".rstrip())
    messages = [_stored(m) for m in raw]
    _check_chain(api_subject, messages, raw, headers)
    return Batch(messages, int(headers.get(NUM_PENDING, "0")))


def _stored(msg: Msg) -> StoredMsg:
    headers = msg.headers or {}
    return StoredMsg(
        seq=int(headers[SEQUENCE]),
        subject=headers.get(SUBJECT, ""),
        data=msg.data,
        time=headers.get(TIME_STAMP, ""),
    )


def _check_chain(api_subject: str, messages: list[StoredMsg], raw: list[Msg], end: dict[str, str]) -> None:
    """Every message names its predecessor in the batch: a dropped message (slow consumer) is detected, not hidden."""
    previous = 0
    for msg, stored in zip(raw, messages, strict=True):
        if int((msg.headers or {}).get(LAST_SEQUENCE, previous)) != previous:
            raise DirectGetError(f"direct get on {api_subject} lost a message before sequence {stored.seq}")
        previous = stored.seq
    if int(end.get(LAST_SEQUENCE, previous)) != previous:
        raise DirectGetError(f"direct get on {api_subject} lost messages at the end of the batch")
