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
from nats_mcp.bus.failover import resend_until

MSG_ID = "Nats-Msg-Id"
"""The dedupe header: a second message with the same id within the stream's duplicate window is dropped."""
DEFAULT_TIMEOUT_S = 5.0
"""nats-py's JetStream timeout, when the caller gives none."""
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
