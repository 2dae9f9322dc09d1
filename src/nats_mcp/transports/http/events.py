"""The SSE event-store boundary: every SSE event of an MCP session kept in JetStream, so a dropped stream resumes.

The SDK's ``EventStore`` seam: each event of a session's SSE streams (the priming event of a 2025-11-25 POST
stream included) is published to ``nmcp.<namespace>.sse.<session>.<stream>`` of the namespace's SSE stream
(``Layout.sse_stream``; ``http.sse_resume_s`` is its age limit), its event id naming the store that wrote it. A
client that reconnects with ``Last-Event-ID`` gets what followed on that stream, read back from NATS by direct get,
on any server process (sessions are in NATS too: :mod:`roaming`); if the request of that stream is still being
answered by another process, the resumed stream follows the subject until the response. A process serving a
session's GET stream forwards to it what other processes store for it (their notifications).

One store per session and process (:meth:`NatsEventStore.bound`): the SDK hands the store no session, and one
session must not replay another's events by naming their ids — a session's store reads only its own subjects.

The gateway creates the stream on first use; a least-privilege gateway user (``nats-permissions --role gateway``)
may only open it, so `nats-mcp provision` (as admin) makes it first — until then events go out unstored (no resumption).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from mcp.server.streamable_http import GET_STREAM_KEY, EventCallback, EventMessage, EventStore
from mcp_types import JSONRPCError, JSONRPCMessage, JSONRPCResponse, jsonrpc_message_adapter
from nats.aio.msg import Msg

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import DirectGetError, api_prefix, get_batch
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.setup import ensure_stream, stream_config

log = logging.getLogger("nats_mcp.http")

UNSTORED = "0"
"""The event id of an event NATS did not take (not resumable; a replay after it finds nothing)."""
REPLAY_BATCH = 256
FLUSH_TIMEOUT_S = 2
RETRY_AFTER_FAILURE_S = 30.0
MAX_STREAM_BYTES = 256 * 1024 * 1024


_TOKEN = re.compile(r"[0-9a-f]{32}")
_ORIGIN_COUNT = re.compile(r"[0-9a-f]{8}-[0-9]{1,18}")
SENT_MEMORY = 4096
FOLLOW_MAX_S = 120.0
"""How long a resumed stream follows a request another process answers (the longest call, a claim, waits 30 s); if
that process died meanwhile nothing more comes, and the client resends the request (deduplicated) instead."""
LIVE_QUEUE = 1024


def sse_stream_config(layout: Layout, max_age_s: float) -> Any:
    """The namespace's SSE-event stream (made by the gateway on first use, or by ``nats-mcp provision``)."""
    return stream_config(
        name=layout.sse_stream,
        subjects=[layout.sse_subjects],
        max_age=max_age_s,
        max_bytes=MAX_STREAM_BYTES,
        allow_direct=True,
        description="SSE events of MCP sessions, for Last-Event-ID resumption",
    )


def _stream_token(stream_id: str) -> str:
    """A subject token for an SDK stream id (a JSON-RPC request id: any string)."""
    return hashlib.sha256(stream_id.encode()).hexdigest()[:32]


class NatsEventStore(EventStore):
    """The shared part: the connection and the stream, created on first use (NATS may come up after the server)."""

    def __init__(self, conn: NatsConnection, layout: Layout, max_age_s: float) -> None:
        self.conn = conn
        self.layout = layout
        self.max_age_s = max_age_s
        self._ready = False
        self._lock = asyncio.Lock()
        self._failed_until = 0.0

    def available(self) -> bool:
        """False for a while after a failure (NATS away, or a least-privilege user that may not create the stream):
        events then go out unstored instead of each waiting for NATS and logging."""
        return time.monotonic() >= self._failed_until

    def failed(self, exc: Exception) -> None:
        if self.available():
            log.warning("SSE events are not stored for resumption for %.0fs: %s", RETRY_AFTER_FAILURE_S, exc)
        self._failed_until = time.monotonic() + RETRY_AFTER_FAILURE_S

    async def _ensure(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if not self._ready:
                config = sse_stream_config(self.layout, self.max_age_s)
                await ensure_stream(self.conn.jetstream, config, replicas=self.conn.replicas)
                self._ready = True

    def bound(self, session: str) -> SessionEventStore:
        return SessionEventStore(self, session)

    # A store not bound to a session (the SDK's stateless path passes none) stores and replays nothing.
    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        return UNSTORED

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        return None


class SessionEventStore(EventStore):
    """The events of one MCP session, as this process stores and replays them.

    Event ids are ``<stream token>-<origin>-<n>``: ``origin`` names this store (one per session and process), ``n``
    counts its events, so two processes serving one session never give the same id. A replay finds the id on the
    stream's subject and sends what was stored after it, in the order NATS stored it, whoever stored it.
    """

    def __init__(self, shared: NatsEventStore, session: str) -> None:
        self.shared = shared
        self.prefix = shared.layout.sse_subject(session, "")
        self.origin = os.urandom(4).hex()
        self._count = 0
        self._sent: OrderedDict[str, None] = OrderedDict()
        """Ids this process sent on a resumed or forwarded stream lately: a live copy of one is not sent twice."""
        self.held: set[str] = set()
        """Request streams whose answer may still go out as plain JSON (:mod:`plain`): their response, if it comes
        first, is not stored (no stream to resume); anything else first makes the stream an SSE one, stored."""

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        if stream_id in self.held:
            if isinstance(message, JSONRPCResponse | JSONRPCError):
                return UNSTORED
            self.held.discard(stream_id)  # a notification first: the answer is a stream, its response stored too
        shared = self.shared
        if not shared.available():
            return UNSTORED
        self._count += 1
        token = _stream_token(stream_id)
        event_id = f"{token}-{self.origin}-{self._count}"
        body: dict[str, Any] = {"s": stream_id, "i": event_id, "o": self.origin, "m": None}
        if message is not None:
            body["m"] = message.model_dump(mode="json", by_alias=True, exclude_unset=True)
        try:
            await shared._ensure()  # once per process
            # A plain publish, which the stream captures all the same: waiting for a JetStream ack put two round
            # trips to NATS (the priming event and the response) before every answer, halving calls per second.
            await shared.conn.client.publish(self.prefix + token, json.dumps(body).encode())
        except Exception as exc:  # the event is still sent; it just cannot be resumed after
            shared.failed(exc)
            return UNSTORED
        return event_id

    def _mark(self, event_id: str) -> bool:
        """Remember ``event_id`` as sent; False if it was already."""
        if event_id in self._sent:
            return False
        self._sent[event_id] = None
        while len(self._sent) > SENT_MEMORY:
            self._sent.popitem(last=False)
        return True

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        token, _, rest = last_event_id.partition("-")
        if not _TOKEN.fullmatch(token) or not _ORIGIN_COUNT.fullmatch(rest):
            return None  # not an id this store gave (or UNSTORED)
        shared = self.shared
        subject = self.prefix + token  # only this session's subjects: another session's ids find nothing here
        live: asyncio.Queue[dict[str, Any]] = asyncio.Queue(LIVE_QUEUE)
        sub = None
        try:
            # Subscribed before reading back: what another process stores meanwhile is not missed.
            sub = await shared.conn.client.subscribe(subject, cb=_enqueue(live))
            found, stream_id, foreign, answered = await self._replay(subject, last_event_id, send_callback)
            if not found:
                return None
            if stream_id is None or not foreign or stream_id == GET_STREAM_KEY:
                return stream_id  # this process's own stream (or the GET stream): the SDK goes on live from here
            if not answered:  # a request another process still answers: follow it here until its response
                await self._follow(live, stream_id, send_callback)
            return None  # nothing more will come for this stream here: the SDK ends the resumed response
        except Exception as exc:  # NATS away: the stream goes on live from here, without what was missed
            log.warning("SSE replay after %s cut short: %s", last_event_id[:80], exc)
            return None
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _replay(self, subject: str, after: str, send: EventCallback) -> tuple[bool, str | None, bool, bool]:
        """(found ``after``, the stream id, whether another process stored it, whether its response was sent)."""
        shared = self.shared
        nc, stream = shared.conn.client, shared.layout.sse_stream
        prefix = api_prefix(shared.conn.settings.nats.jetstream_domain)
        found = foreign = answered = False
        stream_id: str | None = None
        seq = 1
        await nc.flush(timeout=FLUSH_TIMEOUT_S)  # this process's own publishes are in before reading them back
        while True:
            try:
                batch = await get_batch(nc, stream, seq, REPLAY_BATCH, subject=subject, prefix=prefix)
            except DirectGetError:
                break  # nothing (more) on the subject: expired, or never stored
            for stored in batch.messages:
                body = json.loads(stored.data)
                seq = stored.seq + 1
                stream_id = str(body["s"])
                foreign = foreign or body.get("o") != self.origin
                if not found:
                    found = body.get("i") == after
                    continue
                if body["m"] is not None and self._mark(str(body["i"])):  # a priming event is only a cursor
                    answered = answered or _answers(body["m"], stream_id)
                    await send(EventMessage(jsonrpc_message_adapter.validate_python(body["m"]), str(body["i"])))
            if batch.at_end or not batch.messages:
                break
        return found, stream_id, foreign, answered

    async def _follow(self, live: asyncio.Queue[dict[str, Any]], stream_id: str, send: EventCallback) -> None:
        """Send what another process stores for ``stream_id`` until its response (or the resumption window ends)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(self.shared.max_age_s, FOLLOW_MAX_S)):
                while True:
                    body = await live.get()
                    if body.get("m") is None or not self._mark(str(body.get("i"))):
                        continue
                    await send(EventMessage(jsonrpc_message_adapter.validate_python(body["m"]), str(body["i"])))
                    if _answers(body["m"], stream_id):
                        return

    @contextlib.asynccontextmanager
    async def forwarding(self, stream_of: Callable[[], Any]) -> AsyncIterator[None]:
        """While a GET stream is served here: what other processes store for it goes out on it too.

        ``stream_of`` gives the local GET stream's sender (None until the SDK has opened it).
        """
        subject = self.prefix + _stream_token(GET_STREAM_KEY)
        live: asyncio.Queue[dict[str, Any]] = asyncio.Queue(LIVE_QUEUE)
        try:
            sub = await self.shared.conn.client.subscribe(subject, cb=_enqueue(live))
        except Exception as exc:
            log.warning("notifications of other processes will not reach this SSE stream: %s", exc)
            yield
            return
        task = asyncio.get_running_loop().create_task(self._forward(live, stream_of), name="sse-forward")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _forward(self, live: asyncio.Queue[dict[str, Any]], stream_of: Callable[[], Any]) -> None:
        while True:
            body = await live.get()
            if body.get("o") == self.origin or body.get("m") is None or not self._mark(str(body.get("i"))):
                continue  # this process's own events went out here already
            sender = stream_of()
            if sender is None:
                continue  # no stream open here (yet): it is stored, a resumption replays it
            message = jsonrpc_message_adapter.validate_python(body["m"])
            try:
                await sender.send(EventMessage(message, str(body["i"])))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                continue


def _answers(message: dict[str, Any], stream_id: str) -> bool:
    """Whether ``message`` is the response that ends the POST stream of request ``stream_id``."""
    return (
        "method" not in message and str(message.get("id")) == stream_id and ("result" in message or "error" in message)
    )


def _enqueue(queue: asyncio.Queue[dict[str, Any]]) -> Callable[[Msg], Awaitable[None]]:
    async def on_msg(msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
        except ValueError:
            return
        if isinstance(body, dict):
            with contextlib.suppress(asyncio.QueueFull):  # a client that stops reading loses live events, not memory
                queue.put_nowait(body)

    return on_msg
