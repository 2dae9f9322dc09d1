"""Unit test of bus/pull.py ``pull`` against a cancel that nats-py swallows: its flush (``_flush_pending``) catches
a CancelledError reaching it while the connection closes and carries on, so a pull in a stopping task went on to wait
out its whole expiry (``work get`` and other human commands ended 0.5 s late, when ``stop_task`` cancelled again).
The task's cancel count still says it was asked to stop; the pull stops there."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from nats_mcp.bus.pull import pull


class SwallowingClient:
    """Subscribes and publishes as nats-py does, except that its publish swallows the cancel it meets (the task is
    cancelled from inside it, at nats-py's ``await transport.drain()`` of a closing connection)."""

    def __init__(self, swallow: bool) -> None:
        self.swallow = swallow
        self.waited = False

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(self, subject: str, **_: Any) -> Any:
        client = self

        class Sub:
            async def next_msg(self, timeout: float) -> Any:
                client.waited = True
                await asyncio.sleep(timeout)  # nothing comes: the pull's expiry
                raise NatsTimeoutError

            async def unsubscribe(self) -> None:
                return None

        return Sub()

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        if self.swallow:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # the stop arrives while nats-py flushes, and its _flush_pending drops it
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)


async def test_a_pull_whose_cancel_nats_py_swallowed_stops_instead_of_waiting_out_its_expiry() -> None:
    nc = SwallowingClient(swallow=True)
    task = asyncio.get_running_loop().create_task(pull(nc, "S", "C", 1, wait_s=30))  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)  # before the fix: 35 s in next_msg, a TimeoutError here
    assert task.cancelled() and not nc.waited


async def test_a_pull_not_cancelled_waits_for_its_messages() -> None:
    nc = SwallowingClient(swallow=False)
    with pytest.raises(NatsTimeoutError):
        await pull(nc, "S", "C", 1, wait_s=0.05, timeout=0.05)  # type: ignore[arg-type]
    assert nc.waited
