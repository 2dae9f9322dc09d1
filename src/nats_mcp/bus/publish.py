"""The JetStream publish boundary: store one message in a stream (dedupe id, expectation headers) and get its sequence.

nats-py failures leave as bus errors (:func:`nats_mcp.bus.errors.nats_edge`): ``NoStreamResponse`` (no stream
answered), ``NatsTimeout``, ``PayloadTooLargeError``, ``JetStreamError`` (the stream refused: a full per-subject
limit, a failed expectation such as ``Nats-Expected-Last-Subject-Sequence``, err_code 10071).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nats.js import JetStreamContext

from nats_mcp.bus.errors import nats_edge

MSG_ID = "Nats-Msg-Id"
"""The dedupe header: a second message with the same id within the stream's duplicate window is dropped."""
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
    if timeout is not None:
        options["timeout"] = timeout
    with nats_edge():
        ack = await js.publish(subject, payload, **options)
    return int(ack.seq)
