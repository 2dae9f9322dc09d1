"""Boundary of a wait's logic without NATS: when it reads, when it stops, and which reads it may share."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.coord.errors import InvalidArgument
from nats_mcp.coord.waits import Waits
from nats_mcp.coord.watch import Listener, Watch


class _Conn:
    def add_listener(self, _callback: Any) -> None:
        pass


class _Watch:
    closed = False

    async def close(self) -> None:
        self.closed = True


class Feed:
    """A subject: the listeners of the waits on it, and a read whose answers the test sets."""

    def __init__(self, answers: list[list[str]]) -> None:
        self.listeners: list[Listener] = []
        self.answers = answers
        self.reads = 0
        self.watches: list[_Watch] = []

    async def watch(self, listener: Listener) -> Watch:
        self.listeners.append(listener)
        self.watches.append(_Watch())
        return cast(Watch, self.watches[-1])

    async def read(self) -> list[str]:
        self.reads += 1
        await asyncio.sleep(0)  # a read takes a round trip
        return self.answers.pop(0) if self.answers else []

    def publish(self) -> None:
        for listener in self.listeners:
            listener()


def waits() -> Waits:
    return Waits(cast(NatsConnection, _Conn()), Layout("team-a"))


async def run(w: Waits, feed: Feed, wait_ms: int) -> list[str]:
    async def read(_since: float) -> list[str]:
        return await feed.read()

    return await w._until(feed.watch, read, bool, wait_ms)


async def parked(w: Waits, count: int = 1) -> None:
    while w.pending < count:  # the loop runs the wait's coroutine up to its park
        await asyncio.sleep(0)


async def test_nothing_arriving_is_one_read_and_an_empty_answer_at_the_deadline() -> None:
    w, feed = waits(), Feed([])
    assert await run(w, feed, 30) == []
    assert feed.reads == 1 and feed.watches[0].closed and w.pending == 0


async def test_a_signal_reads_again_and_a_store_that_trails_it_is_read_once_it_settles() -> None:
    w, feed = waits(), Feed([[], []])  # first read: nothing; after the signal: not stored yet
    task = asyncio.create_task(run(w, feed, 10_000))
    await parked(w)
    feed.answers.append(["m1"])  # readable on the next settle read, with no further signal
    feed.publish()
    assert await asyncio.wait_for(task, 5) == ["m1"]
    assert feed.reads == 3


async def test_stop_waiting_answers_parked_waits_and_new_ones_do_not_wait() -> None:
    w, feed = waits(), Feed([])
    task = asyncio.create_task(run(w, feed, 60_000))
    await parked(w)
    w.stop_waiting()
    assert await asyncio.wait_for(task, 5) == []
    assert await asyncio.wait_for(run(w, feed, 60_000), 5) == []
    assert feed.watches[0].closed and len(feed.watches) == 1  # the second did not even listen


async def test_bad_wait_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        await run(waits(), Feed([]), 60_001)


async def test_a_read_in_flight_is_joined_only_if_it_started_after_what_the_joiner_must_see() -> None:
    w = waits()
    loop = asyncio.get_running_loop()
    reads = 0
    gate = asyncio.Event()

    async def read() -> str:
        nonlocal reads
        reads += 1
        mine = reads
        await gate.wait()
        return f"read {mine}"

    before = loop.time()
    first = asyncio.create_task(w._shared("k", read, before))
    await asyncio.sleep(0)  # the first read is in flight
    joined = asyncio.create_task(w._shared("k", read, before))  # heard nothing since before it started: joins
    late = asyncio.create_task(w._shared("k", read, loop.time()))  # heard a signal after it started: reads anew
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(first, joined, late) == ["read 1", "read 1", "read 2"]
    assert reads == 2 and w._reads == {}


async def test_a_joiner_reads_for_itself_when_the_read_it_joined_is_cancelled_and_shares_a_failure() -> None:
    w = waits()
    since = asyncio.get_running_loop().time()
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "slow"

    async def quick() -> str:
        return "own"

    leader = asyncio.create_task(w._shared("k", slow, since))
    await asyncio.sleep(0)
    joiner = asyncio.create_task(w._shared("k", quick, since))
    await asyncio.sleep(0)
    leader.cancel()
    assert await joiner == "own"

    fail = asyncio.Event()

    async def broken() -> str:
        await fail.wait()
        raise InvalidArgument("no")

    failing = asyncio.create_task(w._shared("k", broken, since))
    await asyncio.sleep(0)
    other = asyncio.create_task(w._shared("k", quick, since))
    await asyncio.sleep(0)
    fail.set()
    for task in (failing, other):
        with pytest.raises(InvalidArgument):
            await task
