"""The pull-consumer boundary: take messages from a durable consumer, and acknowledge them by reply subject alone.

nats-py's pull subscription keeps a subscription per consumer and cannot act on a message another
process received. Here a pull is one ``CONSUMER.MSG.NEXT`` request on a throw-away inbox, and an
acknowledgement is a request to the message's reply subject (``$JS.ACK.<stream>.<consumer>.…``), which
any process may send: the claim record of a work item stores that subject, so a later call, in any
server process, can renew (``+WPI``), release (``-NAK`` with a delay), finish (``+ACK``) or end
(``+TERM``) the delivery. Checked against nats-server 2.15.1: a pulled message arrives on the inbox
with its stream subject (so the client's request multiplexer cannot route it), a ``no_wait`` pull ends
with a ``404 No Messages`` status, and an ``+ACK`` sent after the ack wait ran out (before the message
was delivered again) is still honoured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Literal

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError

from nats_mcp.bus.errors import BusError
from nats_mcp.core.aiotasks import stop_if_cancel_requested

AckKind = Literal["+ACK", "+WPI", "-NAK", "+TERM"]

_END_STATUSES = frozenset({"404", "408"})
"""No messages (no_wait), request expired: the pull is over."""


class PullError(BusError):
    """The consumer refused the pull (deleted, missing, or the request was malformed)."""

    def __init__(self, status: str, description: str) -> None:
        super().__init__(f"pull refused: {status} {description}".strip())
        self.status = status
        self.description = description


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivered message and where it stands, from its reply subject."""

    subject: str
    data: bytes
    headers: dict[str, str]
    reply: str
    stream_seq: int
    delivered: int
    """How many times this message has been delivered (1 on the first delivery)."""
    timestamp_ns: int
    pending: int
    """Messages left for the consumer after this one (when it was delivered)."""


def parse_reply(reply: str) -> tuple[int, int, int, int]:
    """(delivered, stream_seq, timestamp_ns, pending) of a ``$JS.ACK`` reply subject (v1 and v2 forms)."""
    tokens = reply.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    # v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
    # v2: $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>[.<token>]
    tail = tokens[4:9] if len(tokens) == 9 else tokens[6:11]
    delivered, sseq, _dseq, ts, pending = (int(t) for t in tail)
    return delivered, sseq, ts, pending


def _delivery(msg: Msg) -> Delivery:
    delivered, sseq, ts, pending = parse_reply(msg.reply)
    return Delivery(msg.subject, msg.data, dict(msg.headers or {}), msg.reply, sseq, delivered, ts, pending)


async def pull(
    nc: Client,
    stream: str,
    consumer: str,
    batch: int,
    *,
    wait_s: float = 0.0,
    prefix: str = "$JS.API",
    timeout: float = 5.0,
) -> list[Delivery]:
    """Up to ``batch`` messages from a durable pull consumer, in delivery order.

    ``wait_s`` 0 answers at once with what is there (``no_wait``); otherwise the server holds the request
    open up to ``wait_s`` for the first message. Each returned message is now delivered to us, its ack
    wait running. Raises :class:`PullError` when the consumer refuses, nats-py's TimeoutError when the
    server does not answer within ``timeout`` (plus ``wait_s``).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    request: dict[str, object] = {"batch": batch}
    if wait_s > 0:
        request["expires"] = int(wait_s * 1e9)
    else:
        request["no_wait"] = True
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, pending_msgs_limit=max(batch * 4, 64))
    found: list[Delivery] = []
    try:
        # nats-py's flush swallows a cancel that reaches it while the connection closes (``_flush_pending``: ``except
        # CancelledError: pass``); the task's cancel count still says so, and the pull must not wait out its expiry.
        stop_if_cancel_requested()
        await nc.publish(f"{prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}", json.dumps(request).encode(), reply=inbox)
        stop_if_cancel_requested()
        deadline = asyncio.get_running_loop().time() + wait_s + timeout
        while len(found) < batch:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise NatsTimeoutError
            try:
                msg = await sub.next_msg(timeout=left)
            except NatsTimeoutError:
                if found:
                    break  # what arrived is ours; the rest of the batch never came
                raise
            status = (msg.headers or {}).get("Status")
            if status:
                if status in _END_STATUSES:
                    break
                if status == "100":  # idle heartbeat: not asked for, ignored
                    continue
                if status == "503":  # nobody serves that consumer's subject: it does not exist (or no JetStream)
                    raise PullError(status, "no such consumer")
                if found:
                    break
                raise PullError(status, (msg.headers or {}).get("Description", ""))
            found.append(_delivery(msg))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return found


async def ack(nc: Client, reply: str, kind: AckKind, *, delay_s: float | None = None, timeout: float = 5.0) -> None:
    """Acknowledge a delivery by its reply subject and wait for the server to have processed it.

    ``delay_s`` (``-NAK`` only) holds the message back that long before it is offered again.
    """
    payload = kind.encode()
    if kind == "-NAK" and delay_s is not None and delay_s > 0:
        payload = b"-NAK " + json.dumps({"delay": int(delay_s * 1e9)}).encode()
    await nc.request(reply, payload, timeout=timeout)


async def poke(nc: Client, stream: str, consumer: str, *, prefix: str = "$JS.API", timeout: float = 5.0) -> None:
    """Make the consumer look at its redeliveries without taking any message.

    A message whose last allowed delivery expired is only noticed (and its max-deliveries advisory sent)
    when the consumer next serves a pull. This pull asks for at most 1 byte, which no message fits: the
    server answers ``409 Message Size Exceeds MaxBytes`` (or ``404``) and delivers nothing, but runs that
    check first (nats-server 2.15.1).
    """
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    try:
        request = {"batch": 1, "no_wait": True, "max_bytes": 1}
        await nc.publish(f"{prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}", json.dumps(request).encode(), reply=inbox)
        msg = await sub.next_msg(timeout=timeout)
        if not (msg.headers or {}).get("Status"):  # never expected: a message that fits in 1 byte
            raise PullError("200", "a poke received a message")
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
