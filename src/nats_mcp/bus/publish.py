"""The JetStream publish boundary: store one message in a stream (dedupe id, expectation headers) and get its sequence.

nats-py failures leave as bus errors (:func:`nats_mcp.bus.errors.nats_edge`): ``NoStreamResponse`` (no stream
answered), ``NatsTimeout``, ``PayloadTooLargeError``, ``JetStreamError`` (the stream refused: a full per-subject
limit, a failed expectation such as ``Nats-Expected-Last-Subject-Sequence``, err_code 10071).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError
from opentelemetry import trace

from nats_mcp.bus.errors import nats_edge
from nats_mcp.bus.failover import resend_until

MSG_ID = "Nats-Msg-Id"
"""The dedupe header: a second message with the same id within the stream's duplicate window is dropped."""
DEFAULT_TIMEOUT_S = 5.0
"""nats-py's JetStream timeout, when the caller gives none."""
EXPECTED_STREAM = "Nats-Expected-Stream"
"""Store only in this stream (``js.publish``'s ``stream``)."""
EXPECT_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
"""Store only if the subject's last message has this sequence ("0": the subject holds none)."""


async def store(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    stream: str,
    msg_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> int:
    """Publish ``payload`` on ``subject``, expecting ``stream`` to store it; its stream sequence."""
    sent = dict(headers or {})
    if msg_id is not None:
        sent[MSG_ID] = msg_id
    options: dict[str, Any] = {"stream": stream, "headers": sent or None}

    async def send(attempt_timeout: float) -> Any:
        return await js.publish(subject, payload, timeout=attempt_timeout, **options)

    budget = timeout if timeout is not None else DEFAULT_TIMEOUT_S
    with nats_edge():
        # With a dedupe id a publish whose answer did not come is sent again (bus/failover.py): a stream electing
        # a leader stores the first one that reaches the new leader, and drops any repeat.
        ack = await (resend_until(budget, send) if msg_id is not None else send(budget))
    return int(ack.seq)


_tokens = itertools.count()
NO_RESPONDERS = "503"


async def acked(nc: Client, subject: str, payload: bytes, headers: dict[str, str] | None, timeout: float) -> Msg:
    """Publish and wait for the one answer (a JetStream acknowledgement), as ``nc.request`` does — through the
    connection's reply subscription, no responders raised as ``NoRespondersError``, no answer in ``timeout`` as
    nats ``TimeoutError`` — without its per-call machinery (``asyncio.wait_for``, a random token drawn from the OS,
    a done callback, the tracing and resending wrapper): the audit sink's writes, one per record, each awaited.

    The token is a process-wide counter; nats-py's own are 26 characters of NUID and hex, so they never meet.
    """
    if not nc._resp_sub_prefix:
        await nc._init_request_sub()
    assert nc._resp_sub_prefix is not None
    token = f"a{next(_tokens)}"
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Msg] = loop.create_future()
    timer = loop.call_later(timeout, _expire, answer)
    nc._resp_map[token] = answer
    try:
        await nc.publish(subject, payload, reply=nc._resp_sub_prefix.decode() + token, headers=headers)
        msg = await answer
    finally:
        timer.cancel()
        nc._resp_map.pop(token, None)
    if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
        raise nats.errors.NoRespondersError
    return msg


def _expire(answer: asyncio.Future[Msg]) -> None:
    if not answer.done():
        answer.set_exception(nats.errors.TimeoutError)


class LeanJetStream(JetStreamContext):
    """nats-py's JetStream context, whose ``publish`` (every stream write: :func:`store`, a KV put, create, update
    or delete) goes through :func:`acked` rather than the client's request machinery, with what ``js.publish``
    sends, returns and raises: the ``Nats-Expected-Stream`` header, a ``PubAck``, no responders as
    ``NoStreamResponseError``, a refusal as its ``APIError`` (which a KV write turns into its own errors, as
    before). Inside a recording trace span (the request is then the span's child) or with a per-message TTL,
    nats-py's own ``publish``. ``bus/connection.py``'s client makes its contexts of this class."""

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, Any] | None = None,
        msg_ttl: float | None = None,
    ) -> PubAck:
        if msg_ttl is not None or trace.get_current_span().is_recording():
            return await super().publish(subject, payload, timeout, stream, headers, msg_ttl)
        sent = headers
        if stream is not None:
            sent = {**(headers or {}), EXPECTED_STREAM: stream}
        try:
            msg = await acked(self._nc, subject, payload, sent, self._timeout if timeout is None else timeout)
        except nats.errors.NoRespondersError:
            raise NoStreamResponseError from None
        answer = json.loads(msg.data)
        if "error" in answer:
            raise APIError.from_error(answer["error"])
        return PubAck.from_response(answer)
