"""The SSE event-store boundary: every SSE event of an MCP session kept in JetStream, so a dropped stream resumes.

The SDK's ``EventStore`` seam: each event of a session's SSE streams (the priming event of a 2025-11-25 POST
stream included) is published to ``nmcp.<namespace>.sse.<session>.<stream>`` of the namespace's SSE stream
(``Layout.sse_stream``; ``http.sse_resume_s`` is its age limit) with the session's count of events, which is in its
event id. A client that reconnects with ``Last-Event-ID`` gets what followed on that stream, read back from NATS by
direct get.

One store per session (:meth:`NatsEventStore.bound`): the SDK hands the store no session, and one session must not
replay another's events by naming their ids — a session's store reads only its own subjects. Resumption works on
the process that holds the session: the SDK keeps sessions in process memory, so another process answers 404 to
the session id before the store is asked (the events are in NATS, but not the session they belong to).

The gateway creates the stream on first use; a least-privilege gateway user (``nats-permissions --role gateway``)
may only open it, so `nats-mcp provision` (as admin) makes it first — until then events go out unstored (no resumption).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from typing import Any

from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp_types import JSONRPCMessage, jsonrpc_message_adapter

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
    """The events of one MCP session: event ids ``<stream token>-<n>``, ``n`` counting the session's events."""

    def __init__(self, shared: NatsEventStore, session: str) -> None:
        self.shared = shared
        self.prefix = shared.layout.sse_subject(session, "")
        self._count = 0

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        shared = self.shared
        if not shared.available():
            return UNSTORED
        self._count += 1
        token = _stream_token(stream_id)
        body: dict[str, Any] = {"s": stream_id, "n": self._count, "m": None}
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
        return f"{token}-{self._count}"

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        token, _, count = last_event_id.partition("-")
        if not count.isdigit() or not _TOKEN.fullmatch(token):
            return None  # not an id this store gave (or UNSTORED)
        after = int(count)
        shared = self.shared
        nc, stream = shared.conn.client, shared.layout.sse_stream
        prefix = api_prefix(shared.conn.settings.nats.jetstream_domain)
        subject = self.prefix + token  # only this session's subjects: another session's ids find nothing here
        stream_id: str | None = None
        seq = 1
        try:
            await nc.flush(timeout=FLUSH_TIMEOUT_S)  # this process's own publishes are in before reading them back
            while True:
                try:
                    found = await get_batch(nc, stream, seq, REPLAY_BATCH, subject=subject, prefix=prefix)
                except DirectGetError:
                    break  # nothing (more) on the subject: expired, or never stored
                for stored in found.messages:
                    body = json.loads(stored.data)
                    stream_id = str(body["s"])
                    if body["n"] > after and body["m"] is not None:  # a priming event is only a cursor
                        message = jsonrpc_message_adapter.validate_python(body["m"])
                        await send_callback(EventMessage(message, f"{token}-{body['n']}"))
                    seq = stored.seq + 1
                if found.at_end or not found.messages:
                    break
        except Exception as exc:  # NATS away: the stream goes on live from here, without what was missed
            log.warning("SSE replay after %s cut short: %s", last_event_id[:80], exc)
        return stream_id
