"""The background-task boundary: stopping a loop task for sure (used by the bus and the domain alike).

On Python 3.11 ``asyncio.wait_for`` (used inside nats-py for every request and watch read) can swallow
a cancellation that arrives just as its inner call completes, so one ``cancel()`` may not stop a loop;
a close that awaits such a task would hang. Loops also check their own stop flag for the same reason, or ask
:func:`cancel_requested` where they catch errors: nats-py turns a cancellation that reaches a read of a closed
connection into ``ConnectionClosedError``, which a loop that pauses after errors would otherwise sleep through.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


async def stop_task(task: asyncio.Task[None] | None, *, retry_s: float = 0.5) -> None:
    """Cancel ``task`` until it is done (re-cancelling if a cancellation was swallowed), then reap it."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_s)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


def cancel_requested() -> bool:
    """Whether the running task was asked to stop (``Task.cancel``), even if a library turned the CancelledError it
    got into another exception."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancel_requested() -> None:
    """Raise CancelledError when the running task was asked to stop though the cancel itself was swallowed on the
    way (nats-py's flush drops one that reaches it while the connection closes)."""
    if cancel_requested():
        raise asyncio.CancelledError


class NextStep(Generic[T]):
    """Items handed to ``handle`` in the event loop's next step, in the order they came, by one scheduled callback
    for all that wait: work a caller wants done after what it does now (a tool call's answer) without a task."""

    def __init__(self, handle: Callable[[T], object]) -> None:
        self._handle = handle
        self._waiting: list[T] = []

    def add(self, item: T) -> bool:
        """Queue ``item`` for the loop's next step; False outside a running loop (the caller handles it itself)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self._waiting.append(item)
        if len(self._waiting) == 1:
            loop.call_soon(self.flush)
        return True

    def flush(self) -> None:
        """Hand over every waiting item now, in order (the scheduled callback then finds none)."""
        while self._waiting:
            items, self._waiting = self._waiting, []
            for item in items:
                self._handle(item)
