"""The waiting boundary of reservations: one watch of the table per process, shared by every acquire that waits.

A hundred agents waiting on one process cost one KV watch, not a hundred: the watch runs while anyone waits,
keeps the newest (revision, value) of the table, and wakes the waiters on each change; it stops when the last
waiter leaves. A waiter joins before it reads the table, so a change after its read is always seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.kvwatch import KeyWatch
from nats_mcp.core.aiotasks import stop_task

log = logging.getLogger("nats_mcp.coord.reservations")

_CHECK_S = 1.0
_READY_WAIT_S = 5.0


class SharedWatch:
    """The process's watch of one key, running while someone waits on it."""

    def __init__(self, bucket: Bucket, key: str) -> None:
        self._bucket = bucket
        self._key = key
        self._waiters = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._changed = asyncio.Condition()
        self._latest: tuple[int, bytes] | None = None

    @contextlib.asynccontextmanager
    async def joined(self) -> AsyncIterator[SharedWatch]:
        """Be a waiter: the watch is running (started if needed) before this yields."""
        self._waiters += 1
        try:
            if self._task is None:
                self._ready = asyncio.Event()
                self._task = asyncio.get_running_loop().create_task(self._run(), name=f"watch-{self._key}")
            with contextlib.suppress(TimeoutError):  # no watch (NATS away): the waiter wakes at its own times
                await asyncio.wait_for(self._ready.wait(), _READY_WAIT_S)
            yield self
        finally:
            self._waiters -= 1

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def changed(self, revision: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest (revision, value) once it is newer than ``revision``; None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while self._latest is None or self._latest[0] <= revision:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
            return self._latest

    async def _run(self) -> None:
        try:
            kv = await self._bucket.kv()
            async with KeyWatch(kv, self._key) as watch:
                self._ready.set()
                while self._waiters > 0:
                    seen = self._latest[0] if self._latest is not None else 0
                    change = await watch.changed(seen, _CHECK_S)
                    if change is not None:
                        async with self._changed:
                            self._latest = change
                            self._changed.notify_all()
                self._task = None  # before any await: a waiter joining from now on starts a new watch
        except Exception as exc:
            log.warning("the watch of the reservation table stopped (%s); waiters wake at their own times", exc)
        finally:
            self._ready.set()
            if self._task is asyncio.current_task():
                self._task = None
