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
