"""Resource change feeds: the subscriptions of one subscriber (a 2025 connection, or one 2026 listen stream), each
a watch whose signals are coalesced (:class:`Throttle`) into at most one notification per interval."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol

from mcp.server.context import ServerRequestContext

from nats_mcp.api.resource_uris import ResourceRef
from nats_mcp.coord.watch import Watch
from nats_mcp.core.aiotasks import stop_task

log = logging.getLogger("nats_mcp.api.resources")


class Throttle:
    """Calls ``send`` at most once per ``interval``: the first poke at once, a burst's rest once at its end."""

    def __init__(self, interval: float, send: Callable[[], Awaitable[None]]) -> None:
        self._interval = interval
        self._send = send
        self._dirty = False
        self._last = -math.inf
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def poke(self) -> None:
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="resource-notify")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty:
            wait = self._last + self._interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty = False  # pokes from here on get a send of their own
            self._last = loop.time()
            self.sent += 1
            try:
                await self._send()
            except Exception as exc:  # the client went away; its watches end with its connection
                log.debug("resource notification not delivered: %s", exc)

    async def close(self) -> None:
        await stop_task(self._task)


def nothing_held() -> None:
    return None


@dataclass
class _Subscription:
    watch: Watch
    throttle: Throttle
    release: Callable[[], None]


class Watcher(Protocol):
    """What a feed needs of the resource surface: how often to notify, and a watch on one resource."""

    interval: float

    async def watch(self, ref: ResourceRef, listener: Callable[[], None]) -> Watch: ...


class Feed:
    """The subscriptions of one subscriber (a 2025 connection, or one 2026 listen stream): URI -> watch."""

    def __init__(self, surface: Watcher, send: Callable[[str], Awaitable[None]]) -> None:
        self._surface = surface
        self._send = send
        self._subs: dict[str, _Subscription] = {}
        self._lock = asyncio.Lock()

    @property
    def uris(self) -> set[str]:
        return set(self._subs)

    async def add(self, ref: ResourceRef, release: Callable[[], None] = nothing_held) -> None:
        """Watch ``ref``; ``release`` gives back the pool slot taken for it (at once if it is watched already)."""
        async with self._lock:
            if ref.uri in self._subs:
                release()
                return
            uri = ref.uri

            async def send() -> None:
                await self._send(uri)

            throttle = Throttle(self._surface.interval, send)
            try:
                watch = await self._surface.watch(ref, throttle.poke)
            except BaseException:
                release()
                raise
            self._subs[uri] = _Subscription(watch, throttle, release)

    async def remove(self, uri: str) -> None:
        async with self._lock:
            sub = self._subs.pop(uri, None)
            if sub is not None:
                await _end(sub)

    async def close(self) -> None:
        async with self._lock:
            subs, self._subs = list(self._subs.values()), {}
            for sub in subs:
                await _end(sub)


async def _end(sub: _Subscription) -> None:
    sub.release()
    await sub.watch.close()
    await sub.throttle.close()


def connection_of(ctx: ServerRequestContext[Any]) -> Any | None:
    """The SDK ``Connection`` a 2025-era request arrived on, or None.

    The low-level request context exposes only the per-request session; the connection (whose exit
    stack the SDK unwinds when the client goes: the place it documents for per-connection cleanup) is
    the session's private ``_connection``. If a later SDK hides it, subscriptions fall back to one
    process-wide feed (right for stdio: one connection per process), closed when the server stops.
    """
    connection = getattr(ctx.session, "_connection", None)
    return connection if isinstance(getattr(connection, "exit_stack", None), AsyncExitStack) else None


PROCESS_FEED = object()
"""Key of the process-wide feed used when the connection cannot be reached."""
