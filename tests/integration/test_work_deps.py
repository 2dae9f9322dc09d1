"""Work results, dependencies and cancellation against a real nats-server: get (and its wait), dependsOn, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nats_mcp.coord import capscope
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import Cancelled, Conflict, Forbidden, InvalidArgument, NotFound
from nats_mcp.coord.work.service import WorkService
from nats_mcp.coord.work.submissions import blocked_key
from nats_mcp.dashboard.blocked import blocked_work
from tests.support.natsserver import NatsServer, wait_for
from tests.support.work_service import CAP, caller, claim_one, service

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def work(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[WorkService]:
    async with service(tmp_path, nats_server) as w:
        yield w


async def submit(work: WorkService, who: Caller, task: str, depends_on: list[str] | None = None) -> str:
    item = await work.broadcast(who, task_id=task, description=f"do {task}", capability=CAP, depends_on=depends_on)
    return item.id


async def stored(work: WorkService) -> int:
    return (await work.conn.jetstream.stream_info(work.layout.work_stream)).state.messages


async def test_results_dependencies_and_who_may_see_them(work: WorkService, nats_server: NatsServer) -> None:
    boss, worker, stranger = caller(), caller(), caller()
    a = await submit(work, boss, "a")
    b = await submit(work, boss, "b", [a])
    c = await submit(work, boss, "c", [a, b])
    assert (await work.lookup.get(boss, b)).status == "blocked"
    assert await stored(work) == 1  # blocked items are not in the queue at all: nothing to redeliver or refuse
    assert (await work.views.item_status(b, must_exist=True)).state == "waiting"  # `work watch` knows it
    panel = await blocked_work(work)  # the dashboard's blocked-work panel
    assert panel["total"] == 2 and {(b["id"], b["dependsOnCount"]) for b in panel["shown"]} == {(b, 1), (c, 2)}

    # Bad dependsOn: refused, and nothing written.
    before = await work.subs.keys("sub.*")
    for bad, error in [
        ([str(uuid.uuid4())], NotFound),
        ([a, a], InvalidArgument),
        ([], InvalidArgument),
        ([str(uuid.uuid4()) for _ in range(51)], InvalidArgument),
        (["not-an-id"], InvalidArgument),
    ]:
        with pytest.raises(error):
            await submit(work, boss, "bad", bad)
    assert await work.subs.keys("sub.*") == before and await stored(work) == 1

    # Only a is claimable; completing it (with a result) releases b, then c once b completes too.
    got = await work.claim(worker, CAP, max_items=3, timeout_ms=0)
    assert [i.id for i in got] == [a]
    claimed = await work.lookup.get(boss, a)
    assert (claimed.status, claimed.claimer, claimed.attempts) == ("claimed", worker.guid, 1)
    await work.complete(worker, a, {"answer": 42})
    done = await work.lookup.get(boss, a)
    assert (done.status, done.result, done.settledAt is not None) == ("completed", {"answer": 42}, True)
    assert (await work.lookup.get(boss, b)).status == "pending"
    assert (await work.lookup.get(boss, c)).status == "blocked"  # still waits for b
    item_b = await claim_one(work, worker)
    assert item_b.id == b and item_b.dependsOn == [a]
    assert await claim_one(work, worker) is None

    # A waiting get is woken by the completion (it listens on the item's records: no polling).
    waiting = asyncio.create_task(work.lookup.get(boss, b, wait_ms=30_000))
    subject = work.subs.subject(f"item.{b}")
    connz = lambda: nats_server.monitor("connz?subs=1")  # noqa: E731
    await wait_for(
        lambda: any(subject in (c.get("subscriptions_list") or []) for c in connz().get("connections", [])),
        10,
        message="the waiting get does not listen on the item's record",
    )
    assert not waiting.done()
    await work.complete(worker, b, "b done")
    assert (await waiting).status == "completed" and (await waiting).result == "b done"
    assert (await work.lookup.get(boss, c, wait_ms=1)).status == "pending"  # an unfinished item: answers at the end

    # Who may see an item: its submitter; another agent only with a read grant for the capability.
    with capscope.limited_to(lambda cap: cap == "other"):
        assert (await work.lookup.get(boss, a)).status == "completed"
        with pytest.raises(NotFound):
            await work.lookup.get(stranger, a)
    with capscope.limited_to(lambda cap: cap == CAP):
        assert (await work.lookup.get(stranger, a)).status == "completed"
        with pytest.raises(NotFound):  # a capability filter that does not fit
            await work.lookup.get(stranger, a, capability="other")
    with pytest.raises(NotFound):
        await work.lookup.get(boss, str(uuid.uuid4()))
    with pytest.raises(InvalidArgument):
        await work.lookup.get(boss, a, wait_ms=30_001)


async def test_cancel_pending_blocked_and_claimed(work: WorkService) -> None:
    boss, worker, stranger = caller(), caller(), caller()
    queued = await submit(work, boss, "queued")
    first = await submit(work, boss, "first")
    blocked = await submit(work, boss, "blocked", [first])
    after_blocked = await submit(work, boss, "after-blocked", [blocked])

    with pytest.raises(Forbidden):
        await work.cancel(stranger, queued)
    assert await work.cancel(boss, queued) == "cancelled"
    assert await work.cancel(boss, queued) == "cancelled"  # again: same answer
    assert (await work.lookup.get(boss, queued)).status == "cancelled"
    assert await stored(work) == 1  # its message is gone; only "first" is queued

    # A cancelled blocked item is never released, and its dependents die of it.
    assert await work.cancel(stranger, blocked, admin=True) == "cancelled"
    assert await work.subs.blocked() == []
    dead = await work.lookup.get(boss, after_blocked)
    assert (dead.status, dead.reason, dead.dependency) == ("dead", "dependency_failed", blocked)
    entry = await work.dlq.find(after_blocked)
    assert entry is not None and entry[1].reason == "dependency_failed" and entry[1].dependency == blocked
    with pytest.raises(Conflict):  # a dependency that failed cannot be depended on
        await submit(work, boss, "late", [blocked])

    # A claimed item is marked; its claimer's next call answers cancelled, and it is settled.
    assert (await claim_one(work, worker)).id == first
    assert await work.cancel(boss, first) == "cancel_requested"
    assert (await work.lookup.get(boss, first)).cancelRequested
    with pytest.raises(Cancelled):
        await work.progress(worker, first, progress=50)
    with pytest.raises(Cancelled):
        await work.complete(worker, first, "too late")
    assert (await work.lookup.get(boss, first)).status == "cancelled"
    assert await stored(work) == 0 and await claim_one(work, worker) is None

    # Completed and dead items are not cancelled.
    done = await submit(work, boss, "done")
    assert (await claim_one(work, worker)).id == done
    await work.complete(worker, done)
    with pytest.raises(Conflict):
        await work.cancel(boss, done)
    with pytest.raises(Conflict):
        await work.cancel(boss, after_blocked)
    with pytest.raises(NotFound):
        await work.cancel(boss, str(uuid.uuid4()))

    # Cancels racing a claim of the same items: each item is either claimed (the cancel only marks it) or
    # cancelled (never handed out), never both.
    racing = [await submit(work, boss, f"race-{i}") for i in range(20)]
    outcomes, claimed = await asyncio.gather(
        asyncio.gather(*(work.cancel(boss, i) for i in racing)),
        work.claim(worker, CAP, max_items=20, timeout_ms=0),
    )
    taken = {i.id for i in claimed}
    assert all((outcome == "cancel_requested") == (i in taken) for i, outcome in zip(racing, outcomes, strict=True))
    assert await claim_one(work, worker) is None and await stored(work) == len(taken)


async def test_a_release_left_undone_is_finished_by_the_sweep_and_never_doubled(work: WorkService) -> None:
    boss, worker = caller(), caller()
    a = await submit(work, boss, "a")
    b = await submit(work, boss, "b", [a])
    assert (await claim_one(work, worker)).id == a

    # The completer dies after its decision: the dependents are not looked at.
    settle = work.deps.on_settled

    async def died(_item_id: str) -> None:
        raise ConnectionError("process died")

    work.deps.on_settled = died  # type: ignore[method-assign]
    try:
        await work.complete(worker, a)
    finally:
        work.deps.on_settled = settle  # type: ignore[method-assign]
    assert (await work.lookup.get(boss, b)).status == "blocked"
    assert await work.subs.blocked() == [b]
    assert await work.deps.sweep() == 1
    assert await work.subs.blocked() == [] and (await work.lookup.get(boss, b)).status == "pending"

    # A second release (another process, after the duplicate window) queues a second copy: the claim drops it.
    sub, _ = await work.subs.read(b)
    assert sub is not None and sub.item is not None
    from nats_mcp.coord.models import WorkItem

    await work.enqueue(WorkItem.model_validate(sub.item), "release-again")
    assert await stored(work) == 2
    got = await work.claim(worker, CAP, max_items=5, timeout_ms=0)
    assert [i.id for i in got] == [b]
    await work.complete(worker, b)
    assert await claim_one(work, worker) is None and await stored(work) == 0
    assert not await work.subs.keys(blocked_key(b))

    # The same broadcast again (a resend carries the first attempt's item id) changes nothing; another's is refused.
    d = await work.broadcast(boss, task_id="d", description="do d", capability=CAP, depends_on=[b])
    assert await stored(work) == 1
    await work.deps.submit(boss, d)
    assert await stored(work) == 1 and (await work.lookup.get(boss, d.id)).status == "pending"
    with pytest.raises(Conflict):
        await work.deps.submit(worker, d)


async def test_a_chain_of_200_by_8_workers_runs_in_order_and_survives_a_dead_link(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """The acceptance: 200 items, each depending on the previous one, 8 workers on their own connections. Item 100
    fails for good once: every later item goes to the DLQ (dependency_failed); a DLQ retry of it lets them run."""
    n, workers, broken = 200, 8, 100
    boss = caller()
    async with contextlib.AsyncExitStack() as stack:
        services = [await stack.enter_async_context(service(tmp_path, nats_server)) for _ in range(workers)]
        work = services[0]
        chain: list[str] = []
        for i in range(n):
            chain.append(await submit(work, boss, f"link-{i}", [chain[-1]] if chain else None))
        order: list[str] = []
        failed_once = asyncio.Event()
        finished = asyncio.Event()

        async def worker(w: WorkService) -> None:
            me = caller()
            while not finished.is_set():
                for item in await w.claim(me, CAP, timeout_ms=200):
                    if item.id == chain[broken] and not failed_once.is_set():
                        failed_once.set()
                        await w.fail(me, item.id, "broken link", recoverable=False)
                        continue
                    order.append(item.id)
                    await w.complete(me, item.id, {"link": item.taskId})
                    if len(order) == n:
                        finished.set()

        tasks = [asyncio.create_task(worker(w)) for w in services]
        try:
            await wait_for(failed_once.is_set, 60, message="link 100 was never claimed")
            # Every later link dies of it, each naming the link before it.
            await wait_for(
                lambda: len(order) == broken, 30, message=lambda: f"{len(order)} links completed before the break"
            )

            async def all_dead() -> bool:
                return (await work.lookup.get(boss, chain[-1])).status == "dead"

            await wait_for(all_dead, 60, message="the last link did not die of the broken one")
            for i in (broken + 1, n - 1):
                entry = await work.dlq.find(chain[i])
                assert entry is not None
                assert (entry[1].reason, entry[1].dependency) == ("dependency_failed", chain[i - 1])
            assert len(order) == broken
            await work.dlq_retry(chain[broken], reset_attempts=True)
            await asyncio.wait_for(finished.wait(), 90)
        finally:
            finished.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert order == chain  # each link ran only after the one it depends on completed
        last = await work.lookup.get(boss, chain[-1])
        assert (last.status, last.result) == ("completed", {"link": f"link-{n - 1}"})
        assert await work.dlq.counts() == {}
