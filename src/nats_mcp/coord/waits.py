"""The wait boundary: a read that answers as soon as a matching message arrives, or as it was at its deadline.

A wait is driven by NATS, not by polling: it listens on the subject the message will be stored on (one
shared core subscription per subject and process, :mod:`nats_mcp.coord.watch`, fanned out to every wait
on it and to the resource change feeds, which use the same watcher) *before* its first read, so nothing
published after that read goes unheard; it reads again only when a signal comes. A wait holds no thread
and no task of its own: it is the calling coroutine parked on an :class:`asyncio.Event` under a deadline.
With nothing arriving it costs the first read's requests and one subscription (shared), however long it
lasts.

Waits that read the same thing (a channel after the same sequence: reads that consume nothing and answer
everyone alike) share one read in flight, so a publish that wakes 500 of them costs one read, not 500. A wait
joins only a read that started after everything it must see: its subscription, and the last signal it heard.

A stored message can reach a core subscriber a moment before the stream answers reads with it: a read that
follows a signal and finds nothing is repeated a bounded number of times (:data:`SETTLE_S`) before the wait
goes back to listening. Filters that reject the new message also end up there: a few reads per arriving
message, never per unit of time.

How many waits a principal may hold is the guard's business (``security.pools.read_waits``); this module
only ends them: :meth:`Waits.stop_waiting` (an HTTP drain, shutdown) answers every wait at once with what
its last read found (empty), so a client asks again, elsewhere, rather than be cut off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import InvalidArgument
from nats_mcp.coord.watch import ChangeWatcher, Listener, Watch

MAX_WAIT_MS = 60_000
SETTLE_S = (0.01, 0.05, 0.2)
"""After a signal whose read found nothing: read again after these pauses (the store may trail the signal)."""

T = TypeVar("T")


def check_wait(wait_ms: object) -> int:
    if not isinstance(wait_ms, int) or isinstance(wait_ms, bool) or not 0 <= wait_ms <= MAX_WAIT_MS:
        raise InvalidArgument(f"waitMs must be an integer from 0 to {MAX_WAIT_MS} (milliseconds)")
    return wait_ms


class Waits:
    """The waits of one process: each parked on its own event, woken by the shared subscriptions."""

    def __init__(self, conn: NatsConnection, layout: Layout) -> None:
        self.watcher = ChangeWatcher(conn, layout)
        self._waiting: set[asyncio.Event] = set()
        self._reads: dict[Hashable, tuple[asyncio.Future[Any], float]] = {}
        """Shared reads in flight, by key (:meth:`channel`), with when they started (loop time)."""
        self.stopping = False
        """Set by :meth:`stop_waiting`: waits answer at once from then on."""

    @property
    def pending(self) -> int:
        """Waits parked right now, listening between reads (for tests and status)."""
        return len(self._waiting)

    async def channel(
        self,
        channel: str,
        read: Callable[[], Awaitable[T]],
        found: Callable[[T], bool],
        wait_ms: int,
        key: Hashable | None = None,
    ) -> T:
        """``read`` until ``found`` says it found something, for at most ``wait_ms`` (listening on ``channel``).

        Waits with the same ``key`` share a read in flight: give one only for a read that consumes nothing and
        answers every caller alike (the channel, its position, the page size).
        """

        async def watch(listener: Listener) -> Watch:
            return await self.watcher.channel(channel, listener)

        async def shared(since: float) -> T:
            return await self._shared(("channel", channel, key), read, since)

        async def alone(_since: float) -> T:
            return await read()

        return await self._until(watch, alone if key is None else shared, found, wait_ms)

    async def inbox(
        self, caller: Caller, read: Callable[[], Awaitable[T]], found: Callable[[T], bool], wait_ms: int
    ) -> T:
        """Like :meth:`channel`, listening on the caller's own inbox."""

        async def watch(listener: Listener) -> Watch:
            return await self.watcher.inbox(caller, listener)

        async def alone(_since: float) -> T:  # a read consumes what it returns: never shared
            return await read()

        return await self._until(watch, alone, found, wait_ms)

    async def _shared(self, key: Hashable, read: Callable[[], Awaitable[T]], since: float) -> T:
        """The result of the read of ``key`` in flight if it started after ``since``, else of a new one that later
        waits may join."""
        loop = asyncio.get_running_loop()
        entry = self._reads.get(key)
        if entry is not None and entry[1] > since:
            running = entry[0]
            try:
                result: T = await asyncio.shield(running)
                return result
            except asyncio.CancelledError:
                if not running.cancelled():
                    raise  # this wait was cancelled
                return await read()  # the one that read was cancelled, not this wait: read for itself
        future: asyncio.Future[Any] = loop.create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved" without joiners
        self._reads[key] = (future, loop.time())
        try:
            result = await read()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            raise
        finally:
            if self._reads.get(key, (None,))[0] is future:  # a newer read may have taken the key meanwhile
                del self._reads[key]
        future.set_result(result)
        return result

    def stop_waiting(self) -> None:
        """End every wait now (each answers with its last read) and let new ones answer without waiting."""
        self.stopping = True
        for woken in self._waiting:
            woken.set()

    async def close(self) -> None:
        self.stop_waiting()
        await self.watcher.close()

    async def _until(
        self,
        watch: Callable[[Listener], Awaitable[Watch]],
        read: Callable[[float], Awaitable[T]],
        found: Callable[[T], bool],
        wait_ms: int,
    ) -> T:
        """``read(since)`` (``since``: the loop time after which a shared read must have started) until ``found``."""
        loop = asyncio.get_running_loop()
        if check_wait(wait_ms) == 0 or self.stopping:
            return await read(loop.time())
        deadline = loop.time() + wait_ms / 1000
        woken = asyncio.Event()
        heard = [0.0]

        def signal() -> None:
            heard[0] = loop.time()
            woken.set()

        handle = await watch(signal)  # listening before the first read: a later message is heard
        heard[0] = loop.time()
        try:
            settle = 0  # 0: listening until the deadline; n > 0: the n-th read after a signal found nothing yet
            while True:
                woken.clear()
                result = await read(heard[0])
                if found(result) or self.stopping:
                    return result
                pause = SETTLE_S[settle - 1] if 0 < settle <= len(SETTLE_S) else None
                until = deadline if pause is None else min(deadline, loop.time() + pause)
                if until <= loop.time():
                    return result
                self._waiting.add(woken)
                try:
                    async with asyncio.timeout_at(until):
                        await woken.wait()
                except TimeoutError:
                    if until >= deadline:
                        return result  # nothing came: the last read stands, no further request
                    settle += 1  # a settle pause ran out: read again
                    continue
                finally:
                    self._waiting.discard(woken)
                if self.stopping:
                    return result
                settle = 1  # a signal: read, and if the message is not readable yet, settle
        finally:
            await handle.close()
