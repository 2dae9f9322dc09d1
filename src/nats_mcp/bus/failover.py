"""The leader-failover boundary: how JetStream calls ride out the election that follows a cluster node's death.

When a node dies, every stream, KV bucket and consumer it led has no leader until the survivors' raft
election timers fire (nats-server 2.15.1: 4–9 s after the last heartbeat, not configurable). Meanwhile a
publish to such a stream fails at once (no responders), but a JetStream API request (stream info, a
message get, a consumer create) is simply not answered: only the leader answers it. Left alone, such a
request holds the call for its whole timeout (5 s) even when the new leader is elected a moment after it
was sent, so a kind of call came back only one or two whole timeouts after the election (measured: 10 s
where the election took 6 s). The remedies:

* idempotent JetStream API requests (reads, named consumer creates) are sent again every
  :data:`RESEND_AFTER_S` within the caller's timeout (:func:`resending`), so one is answered soon after a
  leader is back; so is a publish that carries a ``Nats-Msg-Id`` (the stream drops a repeat): a publish is
  answered "no responders" at once when nobody listens on its subject, but a core subscriber on it (a
  waiting claim listens for new work) makes it wait for its whole timeout instead;
* a conditional KV write that no stream received (no responders: nothing was written) is tried again for up
  to :data:`RIDE_OUT_S` (:func:`riding_out`): a claim that took a message and could not record it left the
  message unavailable for a whole lease;
* a KV get asks the leader first and, when no leader answers within :data:`LEADER_READ_S` (or the meta
  leader answers that the bucket has none), reads a follower's copy by a direct get
  (:class:`LeaderFirstKeyValue`; the buckets allow direct gets). While a bucket has no leader nothing new can
  be committed to it, so a follower's copy is as current as any.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.msg import Msg
from nats.js.errors import ServiceUnavailableError
from nats.js.kv import KeyValue

from nats_mcp.bus.errors import NoStreamResponse

T = TypeVar("T")

RESEND_AFTER_S = 0.5
"""An unanswered idempotent JetStream read is sent again after this long (within the caller's timeout)."""
RIDE_OUT_S = 10.0
"""How long a write nobody received is tried again: longer than an election (4–9 s)."""
RIDE_OUT_PAUSE_S = 0.25
LEADER_READ_S = 1.5
"""A KV get the leader has not answered within this long is answered by a follower (direct get)."""

_JS_READ = re.compile(
    r"^\$JS\.(?:[^.]+\.)?API\.(?:INFO|STREAM\.(?:INFO|MSG\.GET|NAMES|LIST)\.?|CONSUMER\.(?:INFO|NAMES|LIST)\.|DIRECT\.GET\."
    r"|CONSUMER\.CREATE\.[^.]+\.[^.]+|CONSUMER\.DURABLE\.CREATE\.)"
)
"""JetStream API requests that sending twice changes nothing: reads, and the create of a *named* consumer (the
server answers an equal config with the consumer as it is; a work pull that finds its consumer without a leader
makes it again, and that create is answered once the consumer's new leader is elected). Unnamed creates, stream
creates and updates, deletes, pulls and acknowledgements are never resent."""

Send = Callable[[float], Awaitable[Msg]]


def is_js_read(subject: str) -> bool:
    return _JS_READ.match(subject) is not None


async def resending(subject: str, timeout: float, send: Send) -> Msg:
    """``send(attempt_timeout)`` once, or for an idempotent JetStream read again each :data:`RESEND_AFTER_S`
    until ``timeout`` has passed; the last attempt's timeout error is raised."""
    if not is_js_read(subject):
        return await send(timeout)
    return await resend_until(timeout, send)


async def resend_until(timeout: float, send: Callable[[float], Awaitable[T]]) -> T:
    """``send(attempt_timeout)`` again each :data:`RESEND_AFTER_S` until one is answered or ``timeout`` passed."""
    if timeout <= RESEND_AFTER_S:
        return await send(timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        try:
            return await send(min(left, RESEND_AFTER_S))
        except TimeoutError:  # nats-py's TimeoutError is an asyncio (builtin) TimeoutError
            if deadline - loop.time() <= 0:
                raise


async def riding_out(write: Callable[[], Awaitable[T]], budget_s: float = RIDE_OUT_S) -> T:
    """``write()``, tried again while it raises :class:`NoStreamResponse` (nobody received it, so nothing was
    written: trying again is safe) for up to ``budget_s``; then that error is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    while True:
        try:
            return await write()
        except NoStreamResponse:
            if loop.time() + RIDE_OUT_PAUSE_S >= deadline:
                raise
        await asyncio.sleep(RIDE_OUT_PAUSE_S)


class LeaderFirstKeyValue(KeyValue):
    """nats-py's KeyValue whose gets ask the bucket's leader (current reads, as before), and a follower only when
    no leader answers in time (during an election). Needs ``allow_direct`` on the bucket's stream."""

    def __init__(self, kv: KeyValue) -> None:
        super().__init__(name=kv._name, stream=kv._stream, pre=kv._pre, js=kv._js, direct=False)
        self._follower = KeyValue(name=kv._name, stream=kv._stream, pre=kv._pre, js=kv._js, direct=True)

    async def _get(self, key: str, revision: int | None = None) -> KeyValue.Entry:
        try:
            return await asyncio.wait_for(super()._get(key, revision), LEADER_READ_S)
        except (TimeoutError, ServiceUnavailableError):
            # Not answered, or answered by the meta leader that the bucket has no leader now (503, "JetStream
            # system temporarily unavailable"): what the followers hold is as current as it gets.
            return await self._follower._get(key, revision)
