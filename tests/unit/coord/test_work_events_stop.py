"""The work-events loop stops at the first cancel even when nats-py turns that cancel into an error."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.errors import ConnectionClosedError

from nats_mcp.bus.layout import Layout
from nats_mcp.coord.work import events as work_events
from nats_mcp.core.aiotasks import stop_task


class ClosingWork:
    """What the loop calls first, waiting as a read would; a cancel becomes ConnectionClosedError, as nats-py's
    ``next_msg`` makes it on a closed connection."""

    def __init__(self) -> None:
        self.layout = Layout("ns")
        self.api = "$JS.API"
        self.waiting = asyncio.Event()

    async def dlq_recover(self) -> None:
        self.waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionClosedError from None


async def test_a_cancel_turned_into_an_error_still_stops_the_loop() -> None:
    work = ClosingWork()
    loop = work_events.WorkEvents(conn=None, work=work)  # type: ignore[arg-type]
    loop.start()
    await asyncio.wait_for(work.waiting.wait(), 5)
    task = loop._task
    assert task is not None
    # One cancel must do: the loop would otherwise pause ERROR_PAUSE_S on the error, and a stop that re-cancels
    # only every 60 s would not end within the 5 s allowed here.
    await asyncio.wait_for(stop_task(task, retry_s=60), 5)
    assert task.cancelled()


async def test_an_error_without_a_cancel_pauses_and_retries(monkeypatch: Any) -> None:
    work = ClosingWork()
    rounds = 0
    three = asyncio.Event()

    async def fails() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 3:
            three.set()
        raise ConnectionClosedError

    work.dlq_recover = fails  # type: ignore[method-assign]
    monkeypatch.setattr(work_events, "ERROR_PAUSE_S", 0.01)
    loop = work_events.WorkEvents(conn=None, work=work)  # type: ignore[arg-type]
    loop.start()
    await asyncio.wait_for(three.wait(), 5)  # the loop carries on after errors that no cancel caused
    await loop.stop()


async def test_the_presence_keeper_stops_at_a_cancel_turned_into_an_error() -> None:
    """The same for the presence keeper, whose failed beats are reported and waited out until the next beat."""
    from nats_mcp.coord.context import Caller
    from nats_mcp.coord.registry.presence import PresenceKeeper

    work = ClosingWork()  # its dlq_recover is the renewal: it waits, then errs when cancelled

    class Identity:
        async def renew(self) -> None:
            await work.dlq_recover()

    class Registry:
        async def heartbeat(self, _caller: Caller) -> bool:
            return True

    me = Caller(guid="a" * 32, namespace="ns", project_id="p" * 16, owner="o", hostname="h")
    keeper = PresenceKeeper(Identity(), Registry(), me, interval=3600)  # type: ignore[arg-type]
    keeper.start()
    await asyncio.wait_for(work.waiting.wait(), 5)
    task = keeper._task
    assert task is not None
    await asyncio.wait_for(stop_task(task, retry_s=60), 5)  # not the hour until the next beat
    assert task.cancelled()
