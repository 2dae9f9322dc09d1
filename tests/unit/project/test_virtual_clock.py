"""The virtual-clock event loop of tests/support: timers fire in order at exact times, no real time passes, and the
clock stands still while anything is ready to run."""

from __future__ import annotations

import asyncio
import socket
import time

from tests.support.virtual_clock import run_virtual


def test_sleeps_are_exact_and_take_no_real_time() -> None:
    async def scenario() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        order: list[tuple[str, float]] = []

        async def after(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            order.append((name, loop.time()))

        await asyncio.gather(after("late", 3600.0), after("early", 0.5), after("mid", 60.0))
        return order

    started = time.monotonic()
    assert run_virtual(scenario) == [("early", 0.5), ("mid", 60.0), ("late", 3600.0)]
    assert time.monotonic() - started < 30  # an hour of virtual time; a real clock would have waited it out


def test_the_clock_stands_still_while_work_is_ready() -> None:
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        for _ in range(1000):
            await asyncio.sleep(0)  # ready at once each time: never a reason to move the clock
        return loop.time()

    assert run_virtual(scenario) == 0.0


def test_real_io_is_still_delivered() -> None:
    async def scenario() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        with left, right:
            left.setblocking(False)
            right.setblocking(False)
            right.send(b"ping")
            data = await loop.sock_recv(left, 4)
        return data, loop.time()

    assert run_virtual(scenario) == (b"ping", 0.0)
