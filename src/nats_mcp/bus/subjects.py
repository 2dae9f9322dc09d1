"""The core-NATS interest boundary: being told *that* a message came on a subject, without reading it.

A JetStream publish is also delivered to core subscribers of its subject, so a plain subscription on
a channel's or an inbox's subject hears every new message without a consumer and without touching
the stream. Only the signal leaves this module, never a payload: a listener is a plain callable with
no arguments (it must not raise and must not block; it is called on the event loop).

One NATS subscription serves every listener of a subject, and it goes when the last listener does.
Interest outlives the connection: nats-py replays its subscriptions after a reconnect of the same
client by itself; when the supervisor has to start a new client (the old one was closed), or a watch
was asked for while NATS was away, the subscriptions are made again on the next ``connected`` event.
Messages published while NATS was away are never delivered to a core subscriber, so every listener
is also called once after each (re)connection: "something may have changed, look again".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import NatsUnavailableError
from nats_mcp.core.aiotasks import stop_task

log = logging.getLogger("nats_mcp.bus.subjects")

Listener = Callable[[], None]

PENDING_MSGS_LIMIT = 1024
"""Signals queued per subscription before nats-py drops (a dropped signal is harmless: earlier ones are queued)."""
FLUSH_TIMEOUT_S = 2
"""A new subscription is confirmed by a round trip, so a message published right after ``watch`` returns is heard."""

_SUBSCRIBE_ERRORS = (nats.errors.Error, NatsUnavailableError, TimeoutError, OSError)


class Watch:
    """One listener on one subject; :meth:`close` ends it (idempotent)."""

    def __init__(self, watcher: SubjectWatcher, subject: str, token: object) -> None:
        self._watcher = watcher
        self.subject = subject
        self._token: object | None = token

    async def close(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            await self._watcher._release(self.subject, token)


class SubjectWatcher:
    """Reference-counted core subscriptions on one :class:`NatsConnection`, kept across new connections."""

    def __init__(self, conn: NatsConnection) -> None:
        self._conn = conn
        self._listeners: dict[str, dict[object, Listener]] = {}
        self._subs: dict[str, tuple[Client, Subscription]] = {}
        self._lock = asyncio.Lock()
        self._resync: asyncio.Task[None] | None = None
        self._resync_again = False
        self._closed = False
        conn.add_listener(self._on_event)

    @property
    def subjects(self) -> dict[str, int]:
        """Subject -> number of listeners (for tests and status)."""
        return {subject: len(listeners) for subject, listeners in self._listeners.items()}

    @property
    def subscribed(self) -> set[str]:
        """Subjects with a live NATS subscription right now."""
        return set(self._subs)

    async def watch(self, subject: str, listener: Listener) -> Watch:
        """Call ``listener`` whenever a message is published on ``subject`` (an exact subject, built by Layout).

        Returns at once when NATS is away: the subscription is made when it comes back.
        """
        if self._closed:
            raise RuntimeError("the watcher is closed")
        token = object()
        self._listeners.setdefault(subject, {})[token] = listener
        await self._sync(subject)
        return Watch(self, subject, token)

    async def close(self) -> None:
        """Drop every subscription and listener; later connection events are ignored."""
        self._closed = True
        await stop_task(self._resync)
        self._listeners.clear()
        async with self._lock:
            for subject in list(self._subs):
                await self._drop(subject)

    # -- internals -------------------------------------------------------------------------------

    async def _release(self, subject: str, token: object) -> None:
        listeners = self._listeners.get(subject)
        if listeners is not None:
            listeners.pop(token, None)
            if not listeners:
                del self._listeners[subject]
        await self._sync(subject)

    def _client(self) -> Client | None:
        if not self._conn.connected:
            return None
        with contextlib.suppress(NatsUnavailableError):
            return self._conn.client
        return None

    async def _sync(self, subject: str) -> None:
        """Make the NATS side match the listeners: subscribe, drop, or move to the current client."""
        async with self._lock:
            wanted = bool(self._listeners.get(subject))
            held = self._subs.get(subject)
            nc = self._client()
            if held is not None and (not wanted or (nc is not None and held[0] is not nc) or held[0].is_closed):
                await self._drop(subject)
                held = None
            if wanted and held is None and nc is not None:
                await self._subscribe(nc, subject)

    async def _subscribe(self, nc: Client, subject: str) -> None:
        async def deliver(_msg: Msg) -> None:
            self._fire(subject)

        try:
            sub = await nc.subscribe(subject, cb=deliver, pending_msgs_limit=PENDING_MSGS_LIMIT)
        except _SUBSCRIBE_ERRORS as exc:
            log.info("watch on %s waits for NATS: %s", subject, exc)
            return
        self._subs[subject] = (nc, sub)
        try:
            await nc.flush(FLUSH_TIMEOUT_S)
        except _SUBSCRIBE_ERRORS as exc:  # the subscription stands; nats-py replays it after a reconnect
            log.info("watch on %s not confirmed yet: %s", subject, exc)

    async def _drop(self, subject: str) -> None:
        held = self._subs.pop(subject, None)
        if held is None:
            return
        nc, sub = held
        if nc.is_closed:
            return
        with contextlib.suppress(*_SUBSCRIBE_ERRORS):
            await sub.unsubscribe()

    def _fire(self, subject: str) -> None:
        for listener in list(self._listeners.get(subject, {}).values()):
            try:
                listener()
            except Exception:
                log.exception("watch listener on %s failed", subject)

    async def _on_event(self, event: str, _data: dict[str, Any]) -> None:
        """Connection observer: after a (re)connection, subscribe again where needed and wake every listener."""
        if self._closed:
            return
        if event == "closed":
            self._subs.clear()  # that client is gone, and its subscriptions with it
        elif event in ("connected", "reconnected"):
            self._resync_again = True
            if self._resync is None or self._resync.done():
                self._resync = asyncio.get_running_loop().create_task(self._resync_all(), name="watch-resync")

    async def _resync_all(self) -> None:
        while self._resync_again and not self._closed:  # an event during a pass gets a pass of its own
            self._resync_again = False
            for subject in list(self._listeners):
                await self._sync(subject)
            for subject in list(self._listeners):
                self._fire(subject)
