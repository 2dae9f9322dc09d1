"""Work queues against a real nats-server: priority, deadlines, leases, retries, ownership, the DLQ and its feeding."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError

from nats_mcp.bus.layout import Layout
from nats_mcp.coord import capscope
from nats_mcp.coord.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    InvalidCursor,
    InvalidName,
    LimitExceeded,
    NotFound,
)
from nats_mcp.coord.work import service as service_module
from nats_mcp.coord.work.events import WorkEvents
from nats_mcp.coord.work.service import MAX_CLAIM_TIMEOUT_MS, WorkService
from nats_mcp.security.policy import Policy, parse_policy
from nats_mcp.security.principal import Principal
from tests.support.env import connected
from tests.support.natsserver import NatsServer, wait_for
from tests.support.work_service import CAP, NS, caller, claim_one, dead, offer, service


@pytest.fixture
async def work(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[WorkService]:
    async with service(tmp_path, nats_server) as w:
        yield w


def subscriptions(server: NatsServer) -> list[str]:
    """Every subscription subject the NATS server holds (all clients), from its monitoring endpoint."""
    connz = server.monitor("connz?subs=1")
    return [s for c in connz.get("connections", []) for s in c.get("subscriptions_list") or []]


async def passed(moment: datetime) -> None:
    """Wait until the wall clock is past ``moment`` (a lease's or a deadline's end the scenario needs behind it)."""
    await wait_for(lambda: datetime.now(UTC) > moment, 30, message=f"the clock did not pass {moment}")


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{message} not met within {timeout}s")


# -- priority and order -----------------------------------------------------------------------------


async def test_higher_priority_first_then_oldest(work: WorkService) -> None:
    ids = {}
    for task, prio in [("low-1", 2), ("high-1", 9), ("mid", 5), ("high-2", 9), ("low-2", 2), ("top", 10)]:
        ids[await offer(work, task, priority=prio)] = task
    me = caller()
    order = []
    while (item := await claim_one(work, me)) is not None:
        order.append(item.taskId)
        await work.complete(me, item.id)
    assert order == ["top", "high-1", "high-2", "mid", "low-1", "low-2"]


async def test_claim_batch_follows_priority_and_stops_at_max(work: WorkService) -> None:
    for i in range(5):
        await offer(work, f"p3-{i}", priority=3)
    await offer(work, "p8", priority=8)
    got = await work.claim(caller(), CAP, max_items=4, timeout_ms=0)
    assert [i.taskId for i in got] == ["p8", "p3-0", "p3-1", "p3-2"]
    assert all(i.attempts == 1 and i.leaseExpiresAt for i in got)


async def test_claim_waits_for_new_work_and_times_out_empty(
    work: WorkService, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = caller()
    assert await work.claim(me, CAP, timeout_ms=300) == []  # nothing came within the wait: empty
    subject = work.layout.work_subject(CAP)
    await wait_for(lambda: subject not in subscriptions(nats_server), 10, message="the first claim still listens")

    # A claim waiting on an empty queue is woken by a broadcast: the item is offered once the claim listens on
    # the work subject (the server shows its subscription, made after its first look), so no look before found it;
    # its look again after subscribing is put off past this test's bound, so only the wake can deliver the item.
    monkeypatch.setattr(service_module, "RECHECK_S", MAX_CLAIM_TIMEOUT_MS / 1000)
    waiting = asyncio.create_task(work.claim(me, CAP, timeout_ms=MAX_CLAIM_TIMEOUT_MS))
    await wait_for(lambda: subject in subscriptions(nats_server), 10, message=f"no claim listening on {subject}")
    await offer(work, "arrives")
    # A robustness limit, not a speed target: a claim the broadcast did not wake waits out its whole 30 s on an
    # empty queue (it polls only for re-offers), so half of that tells the two apart on any machine.
    got = await asyncio.wait_for(waiting, MAX_CLAIM_TIMEOUT_MS / 2000)
    assert [i.taskId for i in got] == ["arrives"]


# -- leases -----------------------------------------------------------------------------------------


async def test_lease_expiry_reoffers_with_attempts_counted(work: WorkService) -> None:
    item_id = await offer(work, "slow")
    a, b = caller(), caller()
    first = await claim_one(work, a)
    assert first.id == item_id and first.attempts == 1
    assert await claim_one(work, b) is None  # leased to a
    second = await claim_one(work, b, timeout_ms=5000)  # the 1 s lease runs out
    assert second is not None and second.id == item_id and second.attempts == 2
    with pytest.raises(Forbidden):
        await work.complete(a, item_id)  # a lost it
    await work.complete(b, item_id)


async def test_progress_renews_the_lease(work: WorkService) -> None:
    item_id = await offer(work, "long")
    a, b = caller(), caller()
    first = await claim_one(work, a)
    assert first.id == item_id
    # renewed every quarter of the 1 s lease until well past the first lease's end: still a's, never re-offered
    outlived = datetime.fromisoformat(first.leaseExpiresAt) + timedelta(seconds=0.5)
    renewals = 0
    while datetime.now(UTC) < outlived:
        await asyncio.sleep(0.25)  # the renewing agent's own pace (the scenario), not a wait for the system
        expires = await work.progress(a, item_id, progress=50, note="halfway")
        renewals += 1
        assert datetime.fromisoformat(expires) > datetime.now(UTC)
        assert await claim_one(work, b) is None
    assert renewals >= 2
    await work.complete(a, item_id)


# -- completion, failure, ownership -----------------------------------------------------------------


async def test_complete_exactly_once_and_only_by_the_claimer(work: WorkService) -> None:
    item_id = await offer(work)
    a, b = caller(), caller()
    await claim_one(work, a)
    for act in (
        lambda: work.complete(b, item_id),
        lambda: work.progress(b, item_id),
        lambda: work.fail(b, item_id, "nope"),
    ):
        with pytest.raises(Forbidden):
            await act()
    await work.complete(a, item_id, result={"ok": True})
    with pytest.raises(Conflict):
        await work.complete(a, item_id)
    status = await work.views.status(CAP)
    assert (status[0].pending, status[0].inFlight) == (0, 0)


async def test_unknown_and_malformed_ids(work: WorkService) -> None:
    with pytest.raises(NotFound):
        await work.complete(caller(), str(uuid.uuid4()))
    with pytest.raises(InvalidArgument):
        await work.complete(caller(), "not-a-uuid")


async def test_recoverable_fail_backs_off_then_reoffers(work: WorkService) -> None:
    item_id = await offer(work)
    a = caller()
    await claim_one(work, a)
    assert await work.fail(a, item_id, "flaky network") == ("retrying", 1)
    assert await claim_one(work, a) is None  # held back for the first backoff step (300 ms), not offered at once
    again = await claim_one(work, a, timeout_ms=5000)
    assert again is not None and again.id == item_id and again.attempts == 2
    assert await work.fail(a, item_id, "still flaky") == ("retrying", 2)
    third = await claim_one(work, a, timeout_ms=5000)
    assert third.attempts == 3
    # the last allowed attempt fails: dead-lettered with the whole history
    assert await work.fail(a, item_id, "gave up") == ("dead_lettered", 3)
    page = await work.dlq.page(None, 10, None)
    [entry] = page.items
    assert entry.id == item_id and entry.reason == "max_attempts" and entry.attempts == 3
    assert [e.split(": ", 1)[1] for e in entry.errors] == ["flaky network", "still flaky", "gave up"]
    assert (await work.views.status(CAP))[0].model_dump() == {
        "capability": CAP,
        "pending": 0,
        "inFlight": 0,
        "deadLettered": 1,
        "oldestPendingSeconds": None,
    }


async def test_unrecoverable_fail_dead_letters_at_once(work: WorkService) -> None:
    item_id = await offer(work)
    a = caller()
    await claim_one(work, a)
    assert await work.fail(a, item_id, "bad input", recoverable=False) == ("dead_lettered", 1)
    entry = (await work.dlq.page(CAP, 10, None)).items[0]
    assert entry.reason == "unrecoverable" and "bad input" in entry.errors[0]
    assert await claim_one(work, a) is None
    with pytest.raises(Conflict):
        await work.complete(a, item_id)


# -- dead letters without any call ------------------------------------------------------------------


async def test_crashed_claimer_dead_letters_after_max_deliveries_with_no_process_running(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with service(tmp_path, nats_server) as w:
        item_id = await offer(w)
        for _ in range(3):  # three claimers that "crash": none of them settles the item
            last = await claim_one(w, caller(), timeout_ms=5000)
            assert last.id == item_id
    # every process is gone when the last lease runs out: the advisory waits in the events stream
    await passed(datetime.fromisoformat(last.leaseExpiresAt))
    async with service(tmp_path, nats_server) as w:
        events = WorkEvents(w._conn, w)

        async def dead_lettered() -> bool:
            await events.tick()
            return bool((await w.dlq.page(None, 10, None)).items)

        await eventually(dead_lettered, message="the item reaches the DLQ")
        [entry] = (await w.dlq.page(None, 10, None)).items
        assert entry.id == item_id and entry.reason == "max_attempts" and entry.attempts == 3
        assert sum("lease expired" in e for e in entry.errors) == 3
        status = (await w.views.status(CAP))[0]
        assert (status.pending, status.inFlight, status.deadLettered) == (0, 0, 1)


# -- deadlines --------------------------------------------------------------------------------------


async def test_deadline_passed_item_is_never_handed_out(work: WorkService) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    item_id = await offer(work, "urgent", priority=9, deadline=soon.isoformat())
    later_id = await offer(work, "normal", priority=1)
    await passed(soon)
    me = caller()
    got = await claim_one(work, me)
    assert got.id == later_id  # the expired one was skipped and dead-lettered
    [entry] = (await work.dlq.page(None, 10, None)).items
    assert entry.id == item_id and entry.reason == "deadline_passed" and entry.attempts == 0


async def test_deadline_timer_dead_letters_an_unclaimed_item(work: WorkService) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    item_id = await offer(work, "urgent", deadline=soon)
    events = WorkEvents(work._conn, work)

    async def dead_lettered() -> bool:
        await events.drain(wait_s=0.5)
        return bool((await work.dlq.page(None, 10, None)).items)

    await eventually(dead_lettered, message="the deadline timer fires")
    assert (await work.dlq.page(None, 10, None)).items[0].id == item_id
    assert (await work.views.status(CAP))[0].pending == 0


async def test_deadline_in_the_past_or_malformed_is_refused(work: WorkService) -> None:
    with pytest.raises(InvalidArgument):
        await offer(work, deadline="2001-01-01T00:00:00Z")
    with pytest.raises(InvalidArgument):
        await offer(work, deadline="tomorrow")
    assert await work.views.status() == []  # nothing was queued


# -- DLQ retry / discard / list ---------------------------------------------------------------------


async def test_dlq_retry_requeues_exactly_once(work: WorkService) -> None:
    [item_id] = await dead(work, 1)
    requeued = await work.dlq_retry(item_id, reset_attempts=False)
    assert requeued.id == item_id and requeued.attempts == 1
    assert (await work.dlq.page(None, 10, None)).items == []
    with pytest.raises(NotFound):
        await work.dlq_retry(item_id, reset_attempts=False)
    me = caller()
    again = await claim_one(work, me)
    assert again.id == item_id and again.attempts == 2  # counted on from the DLQ entry
    await work.complete(me, item_id)


async def test_dlq_retry_with_reset_starts_attempts_over(work: WorkService) -> None:
    [item_id] = await dead(work, 1)
    await work.dlq_retry(item_id, reset_attempts=True)
    assert (await claim_one(work, caller())).attempts == 1


async def test_dlq_retry_interrupted_half_way_is_finished_by_recovery(work: WorkService) -> None:
    [item_id] = await dead(work, 1)

    async def crash(_item: Any, _msg_id: str) -> None:
        raise RuntimeError("process died")

    with pytest.raises(RuntimeError):
        await work.dlq.retry(item_id, False, crash)
    # neither in the DLQ nor in the queue, but not lost: the intent holds it
    assert (await work.dlq.page(None, 10, None)).items == []
    assert await claim_one(work, caller()) is None
    assert await work.dlq.recover(work.publish, older_than_s=60) == 0  # too young to be abandoned
    assert await work.dlq.recover(work.publish, older_than_s=0) == 1
    assert (await claim_one(work, caller())).id == item_id
    assert await work.dlq.recover(work.publish, older_than_s=0) == 0


async def test_dlq_discard(work: WorkService) -> None:
    a, b = await dead(work, 2)
    await work.dlq.discard(a)
    assert [e.id for e in (await work.dlq.page(None, 10, None)).items] == [b]
    with pytest.raises(NotFound):
        await work.dlq.discard(a)
    with pytest.raises(NotFound):
        await work.dlq_retry(a, False)


async def test_dlq_list_pages_with_bound_cursors(work: WorkService) -> None:
    ids = await dead(work, 5)
    first = await work.dlq.page(None, 2, None)
    assert [e.id for e in first.items] == ids[:2] and first.has_more and first.total == 5
    second = await work.dlq.page(None, 2, first.next_cursor)
    third = await work.dlq.page(None, 2, second.next_cursor)
    assert [e.id for e in second.items + third.items] == ids[2:]
    assert not third.has_more and third.next_cursor is None
    with pytest.raises(InvalidCursor):
        await work.dlq.page("other", 2, first.next_cursor)
    assert (await work.dlq.page("other", 10, None)).items == []


# -- list and status --------------------------------------------------------------------------------


async def test_list_in_claim_order_never_claims_and_pages(work: WorkService) -> None:
    for task, prio in [("a", 3), ("b", 7), ("c", 3), ("d", 10), ("e", 7)]:
        await offer(work, task, priority=prio)
    first = await work.views.list_items(CAP, limit=2)
    assert [i.taskId for i in first.items] == ["d", "b"] and first.total == 5 and first.has_more
    rest = await work.views.list_items(CAP, limit=10, cursor=first.next_cursor)
    assert [i.taskId for i in rest.items] == ["e", "a", "c"] and not rest.has_more
    ranged = await work.views.list_items(CAP, min_priority=4, max_priority=9)
    assert [i.taskId for i in ranged.items] == ["b", "e"] and ranged.total == 2
    with pytest.raises(InvalidCursor):
        await work.views.list_items(CAP, min_priority=4, cursor=first.next_cursor)
    with pytest.raises(InvalidArgument):
        await work.views.list_items(CAP, min_priority=8, max_priority=2)
    assert (await work.views.status(CAP))[0].pending == 5  # listing claimed nothing


async def test_list_deadline_filters(work: WorkService) -> None:
    now = datetime.now(UTC)
    await offer(work, "none")
    await offer(work, "near", deadline=(now + timedelta(hours=1)).isoformat())
    await offer(work, "far", deadline=(now + timedelta(days=3)).isoformat())
    before = (now + timedelta(days=1)).isoformat()
    assert [i.taskId for i in (await work.views.list_items(CAP, deadline_before=before)).items] == ["near"]
    assert [i.taskId for i in (await work.views.list_items(CAP, deadline_after=before)).items] == ["far"]


async def test_status_counts_every_capability(work: WorkService) -> None:
    await offer(work, "x")
    await work.broadcast(caller(), task_id="y", description="y", capability="go_lang", priority=2)
    await work.broadcast(caller(), task_id="z", description="z", capability="go_lang", priority=9)
    me = caller()
    await work.claim(me, "go_lang", timeout_ms=0)
    statuses = {s.capability: s for s in await work.views.status()}
    assert set(statuses) == {CAP, "go_lang"}
    assert (statuses["go_lang"].pending, statuses["go_lang"].inFlight) == (1, 1)
    assert statuses[CAP].pending == 1 and statuses[CAP].oldestPendingSeconds is not None


# -- validation leaves nothing behind ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"capability": "Bad.Cap"}, InvalidName),
        ({"capability": "x>"}, InvalidName),
        ({"priority": 0}, InvalidArgument),
        ({"priority": 11}, InvalidArgument),
        ({"task_id": ""}, InvalidArgument),
        ({"description": "  "}, InvalidArgument),
        ({"description": "x" * 9000}, LimitExceeded),
        ({"context_data": {"k": "v" * 20000}}, LimitExceeded),
    ],
)
async def test_bad_broadcast_writes_nothing(work: WorkService, kwargs: dict[str, Any], error: type) -> None:
    args: dict[str, Any] = {"task_id": "t", "description": "d", "capability": CAP, "priority": 5, **kwargs}
    with pytest.raises(error):
        await work.broadcast(caller(), **args)
    info = await work._conn.jetstream.stream_info(work.layout.work_stream)
    assert info.state.messages == 0


# -- settings take effect ---------------------------------------------------------------------------


async def test_ack_timeout_and_max_attempts_settings_reach_consumers(tmp_path: Path, nats_server: NatsServer) -> None:
    warp_names = {"NATS_MCP_NAMESPACE": NS, "WORKQUEUE_ACK_TIMEOUT": "2500", "WORKQUEUE_MAX_ATTEMPTS": "7"}
    async with service(tmp_path, nats_server, warp_names) as w:
        await offer(w)
        info = await w._conn.jetstream.consumer_info(w.layout.work_stream, Layout.work_consumer(CAP, 5))
        assert (info.config.ack_wait, info.config.max_deliver) == (2.5, 7)
    # a later process with other settings brings the existing consumer in line
    warp_names.update(WORKQUEUE_ACK_TIMEOUT="1500", WORKQUEUE_MAX_ATTEMPTS="2")
    async with service(tmp_path, nats_server, warp_names) as w:
        await offer(w)
        info = await w._conn.jetstream.consumer_info(w.layout.work_stream, Layout.work_consumer(CAP, 5))
        assert (info.config.ack_wait, info.config.max_deliver) == (1.5, 2)


async def test_max_attempts_setting_decides_when_lease_expiries_dead_letter(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with service(tmp_path, nats_server, NATS_MCP_WORK_MAX_ATTEMPTS="1") as w:
        item_id = await offer(w)
        assert (await claim_one(w, caller())).id == item_id
        events = WorkEvents(w._conn, w)

        async def dead_lettered() -> bool:
            await events.tick()
            return bool((await w.dlq.page(None, 10, None)).items)

        await eventually(dead_lettered, message="one expired lease is enough with max attempts 1")


# -- namespaces -------------------------------------------------------------------------------------


async def test_namespaces_do_not_share_queues(tmp_path: Path, nats_server: NatsServer) -> None:
    async with service(tmp_path, nats_server) as a, service(tmp_path, nats_server, NATS_MCP_NAMESPACE="work-b") as b:
        await offer(a, "only-in-a")
        assert await b.claim(caller("work-b"), CAP, timeout_ms=0) == []
        assert await b.views.status() == []
        assert (await a.views.status(CAP))[0].pending == 1
        with pytest.raises(NotFoundError):
            await b._conn.jetstream.consumer_info(b.layout.work_stream, Layout.work_consumer(CAP, 5))


# -- work boundaries (issue 24) ---------------------------------------------------------------------

BOUNDED = """
version: 1
roles:
  worker: {tools: ["*"], namespaces: ["*"], capabilities: {broadcast: [python], claim: [python]}}
  corp: {tools: ["*"], namespaces: ["*"], capabilities: {broadcast: [python], claim: [python], boundaries: [corporate]}}
"""


def boundaries_of(role: str) -> Any:
    """The per-call boundary scope the server sets for a principal holding ``role`` (real policy, real reader)."""
    policy = Policy(parse_policy(BOUNDED))
    reader = policy.boundary_reader(Principal(role, "local", "local", roles=frozenset({role})))
    assert reader is not None  # neither role grants '*'
    return capscope.boundaries_limited_to(reader)


async def test_an_item_of_a_boundary_is_invisible_and_unclaimable_without_it(work: WorkService) -> None:
    boss, plain, corp = caller(), caller(), caller()
    secret = {"token": "corporate context"}
    corporate = (
        await work.broadcast(
            boss, task_id="corp", description="d", capability=CAP, priority=9, boundary="corporate", context_data=secret
        )
    ).id
    after = (
        await work.broadcast(
            boss, task_id="after", description="d", capability=CAP, depends_on=[corporate], boundary="corporate"
        )
    ).id
    open_id = await offer(work, "open", priority=2)
    with pytest.raises(InvalidName):
        await work.broadcast(boss, task_id="x", description="d", capability=CAP, boundary="Corp.*")

    with boundaries_of("worker"):
        listed = await work.views.list_items(CAP)
        assert [i.id for i in listed.items] == [open_id] and listed.total == 1
        [status] = await work.views.status(CAP)
        assert (status.pending, status.inFlight) == (1, 0)
        with pytest.raises(NotFound):
            await work.lookup.get(plain, corporate)
        with pytest.raises(NotFound):  # not even its submitter, once its role lost the boundary
            await work.lookup.get(boss, corporate)
        got = await work.claim(plain, CAP, max_items=5, timeout_ms=0)  # the corporate item has the higher priority
        assert [i.id for i in got] == [open_id]
        assert await work.claim(plain, CAP, timeout_ms=0) == []
        await work.complete(plain, open_id)
    # Never delivered to it, not even to be given back: the corporate consumer handed out nothing.
    consumer = Layout.work_consumer(CAP, 9, "corporate")
    info = await work._conn.jetstream.consumer_info(work.layout.work_stream, consumer)
    assert info.delivered.stream_seq == 0 and info.config.filter_subject == work.layout.work_subject(
        CAP, 9, "corporate"
    )

    with boundaries_of("corp"):
        assert [i.id for i in (await work.views.list_items(CAP)).items] == [corporate]
        assert (await work.lookup.get(corp, corporate)).boundary == "corporate"
        blocked = await work.lookup.get(corp, after)
        assert (blocked.status, blocked.boundary) == ("blocked", "corporate")
        [item] = await work.claim(corp, CAP, timeout_ms=0)
        assert (item.id, item.boundary, item.contextData) == (corporate, "corporate", secret)
        assert (await work.views.status(CAP))[0].inFlight == 1
        # dead-lettered, it stays in its boundary: the DLQ listing and the retry keep it there
        await work.fail(corp, corporate, "no", recoverable=False)
        dead = await work.dlq.page(None, 10, None)  # its dependent with it
        assert [(e.id, e.workItem.boundary) for e in dead.items] == [(corporate, "corporate"), (after, "corporate")]
        assert dead.total == 2
        assert (await work.views.status(CAP))[0].deadLettered == 2
    with boundaries_of("worker"):
        page = await work.dlq.page(None, 10, None)
        assert page.items == [] and page.total == 0
        assert (await work.views.status(CAP))[0].deadLettered == 0  # not even counted
        assert await work.claim(plain, CAP, timeout_ms=0) == []
    retried = await work.dlq_retry(corporate, True)
    assert retried.boundary == "corporate"
    assert (await work.lookup.get(boss, after)).status == "blocked"  # its dependent came back with it
    with boundaries_of("worker"):
        assert await work.claim(plain, CAP, timeout_ms=0) == []
    with boundaries_of("corp"):
        [again] = await work.claim(corp, CAP, timeout_ms=0)
        assert (again.id, again.boundary) == (corporate, "corporate")
        await work.complete(corp, corporate)

        async def released() -> bool:
            return (await work.lookup.get(corp, after)).status == "pending"

        await eventually(released, message="the dependent released")
    with boundaries_of("worker"):  # the released dependent is queued in its boundary too
        assert await work.claim(plain, CAP, timeout_ms=0) == []
        [status] = await work.views.status(CAP)
        assert (status.pending, status.inFlight, status.oldestPendingSeconds) == (0, 0, None)
    with boundaries_of("corp"):
        [dependent] = await work.claim(corp, CAP, timeout_ms=0)
        assert (dependent.id, dependent.boundary) == (after, "corporate")


async def test_a_work_stream_made_before_boundaries_is_brought_up_to_date(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """Streams of the older layout (subjects ``work.*.*``, ``dlq.*.*``) and a consumer: setup widens the subjects, the
    queued unbounded item is still claimed through the old consumer, and a bounded item can be queued beside it."""
    old = Layout("work-old")
    async with connected(tmp_path / "old", nats_server.url, NATS_MCP_NAMESPACE="work-old") as conn:
        js = conn.jetstream
        await js.add_stream(
            StreamConfig(
                name=old.work_stream,
                subjects=["nmcp.work-old.work.*.*"],
                retention=RetentionPolicy.WORK_QUEUE,
                allow_direct=True,
            )
        )
        await js.add_stream(StreamConfig(name=old.dlq_stream, subjects=["nmcp.work-old.dlq.*.*"], allow_direct=True))
        await js.add_consumer(
            old.work_stream,
            ConsumerConfig(
                durable_name="w_python_5", filter_subject="nmcp.work-old.work.python.5", ack_policy=AckPolicy.EXPLICIT
            ),
        )
        item = {"id": str(uuid.uuid4()), "taskId": "legacy", "capability": CAP, "description": "d", "priority": 5}
        item |= {"offeredBy": "0" * 32, "offeredAt": "2026-01-01T00:00:00Z", "attempts": 0}
        await js.publish("nmcp.work-old.work.python.5", json.dumps(item).encode())
    async with service(tmp_path, nats_server, NATS_MCP_NAMESPACE="work-old") as w:
        info = await w._conn.jetstream.stream_info(old.work_stream)
        assert info.config.subjects == ["nmcp.work-old.work.>"]
        assert (await w._conn.jetstream.stream_info(old.dlq_stream)).config.subjects == ["nmcp.work-old.dlq.>"]
        bounded = (
            await w.broadcast(caller("work-old"), task_id="b", description="d", capability=CAP, boundary="personal")
        ).id
        # a list pages across the boundaries of one priority in claim order: unbounded first
        first = await w.views.list_items(CAP, limit=1)
        assert [i.taskId for i in first.items] == ["legacy"] and first.next_cursor is not None
        second = await w.views.list_items(CAP, limit=1, cursor=first.next_cursor)
        assert [i.id for i in second.items] == [bounded] and second.next_cursor is None
        got = await w.claim(caller("work-old"), CAP, max_items=5, timeout_ms=0)
        assert [(i.taskId, i.boundary) for i in got] == [("legacy", None), ("b", "personal")] and got[1].id == bounded
        # a message whose boundary is not its subject's was not written by us: never handed out
        forged = {**item, "id": str(uuid.uuid4()), "taskId": "forged", "boundary": "corporate"}
        await w._conn.jetstream.publish(w.layout.work_subject(CAP, 5, "personal"), json.dumps(forged).encode())
        assert await w.claim(caller("work-old"), CAP, timeout_ms=0) == []
