"""A virtual clock for asyncio tests of time-based logic: an event loop whose time jumps to the next timer instead
of waiting for it, so ``asyncio.sleep`` and ``loop.time()`` are exact and a test takes no real time."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    """Never blocks: with nothing ready, the loop's clock moves on by the timeout the loop asked to wait."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self._loop.advance(timeout)
        elif not ready and timeout is None:
            # nothing scheduled and nothing ready: only real I/O can wake the loop (a test of ours never does this)
            ready = super().select(None)
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """``time()`` starts at 0 and advances only when every task waits on a timer: to exactly that timer."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh virtual-clock loop (then closed)."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
