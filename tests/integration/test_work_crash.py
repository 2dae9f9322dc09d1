"""Boundary of work and DLQ steps a dying process cut off, against a real nats-server: each half-done state is made
with the code's own first steps, then abandoned; what the next call (or the recovery) does with it must lose nothing
and hand nothing out twice. Found while building tests/chaos/test_server_kill.py. The two windows of the DLQ retry
(issue 21, item 6; written out in :mod:`nats_mcp.coord.work.dlq`) are at the end: each state is the exact one the
interleaving leaves, and the item must end in exactly one place, handed out once."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from nats.js.errors import KeyNotFoundError

from nats_mcp.bus.layout import Layout
from nats_mcp.bus.pull import Delivery
from nats_mcp.coord.checks import timestamp
from nats_mcp.coord.errors import Conflict, NotFound
from nats_mcp.coord.models import DlqItem, WorkItem
from nats_mcp.coord.work.events import WorkEvents
from nats_mcp.coord.work.service import WorkService
from tests.support.natsserver import NatsServer, wait_for
from tests.support.work_service import CAP, caller, claim_one, dead, offer, service

LEASE_OVER_MS = 2500
"""A claim that waits this long outlasts the 1 s lease of any message claimed before it."""


@pytest.fixture
async def work(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[WorkService]:
    async with service(tmp_path, nats_server) as w:
        yield w


async def queued(work: WorkService) -> int:
    return int((await work.conn.jetstream.stream_info(work.layout.work_stream)).state.messages)


async def intents(work: WorkService) -> int:
    """Requeue intents stored (a deleted one leaves a marker on its subject: its get says not found)."""
    kv = await work.state.kv()
    prefix = f"$KV.{work.state.name}."
    info = await work.conn.jetstream.stream_info(f"KV_{work.state.name}", subjects_filter=f"{prefix}requeue.*")
    found = 0
    for subject in info.state.subjects or {}:
        with contextlib.suppress(KeyNotFoundError):
            await kv.get(subject.removeprefix(prefix))
            found += 1
    return found


async def cut_dead_letter(work: WorkService) -> str:
    """An unrecoverable fail's first steps — the decision (the record CAS to dead) and the DLQ entry — and no more:
    the process died before the queue message went (its +TERM)."""
    item_id = await offer(work)
    item = await claim_one(work, caller())
    record, revision = await work.records.read(item_id)
    assert record is not None
    dead_record = replace(
        record, state="dead", reason="unrecoverable", settled_at=timestamp(), claimer=None, reply=None
    )
    assert await work.records.write(item_id, dead_record, revision)
    entry = DlqItem(
        id=item_id,
        workItem=item.model_copy(update={"leaseExpiresAt": None}),
        reason="unrecoverable",
        attempts=1,
        failedAt=timestamp(),
        errors=[],
    )
    assert await work.dlq.add(entry)
    assert await queued(work) == 1  # the dead item's message is still stored, and comes back when its lease ends
    return item_id


@pytest.mark.parametrize("reset", [False, True])
async def test_a_retry_after_a_dead_letter_cut_before_the_message_went_requeues_one_copy(
    work: WorkService, reset: bool
) -> None:
    """Was: the old message came back when its lease ran out, and the item was handed out (and completed) twice."""
    item_id = await cut_dead_letter(work)
    await work.dlq_retry(item_id, reset_attempts=reset)
    assert await queued(work) == 1  # the requeued copy, and only that
    me = caller()
    assert (await claim_one(work, me, timeout_ms=LEASE_OVER_MS)).id == item_id
    await work.complete(me, item_id)
    assert await claim_one(work, caller(), timeout_ms=LEASE_OVER_MS) is None
    assert await queued(work) == 0
    assert (await work.dlq.page(None, 10, None)).items == []


async def test_a_discard_after_a_dead_letter_cut_before_the_message_went_leaves_nothing_to_claim(
    work: WorkService,
) -> None:
    """Was: the discarded item came back when its old message's lease ran out, and was handed out as a fresh one."""
    item_id = await cut_dead_letter(work)
    await work.dlq.discard(item_id)
    assert await queued(work) == 0
    assert await claim_one(work, caller(), timeout_ms=LEASE_OVER_MS) is None


async def crash(_item: WorkItem, _msg_id: str) -> None:
    raise RuntimeError("process died before the publish")


@pytest.mark.parametrize("cut", ["after_intent", "after_entry_taken", "after_publish"])
async def test_a_retry_sent_again_finishes_the_one_a_crash_cut_off(work: WorkService, cut: str) -> None:
    """Was: the agent's repeated call answered conflict ("already in progress") or not_found, and the item stayed out
    of sight until a server process's recovery took the intent up, 15 to 45 s later."""
    [item_id] = await dead(work, 1)

    async def publish_then_crash(item: WorkItem, msg_id: str) -> None:
        await work.publish(item, msg_id)
        raise RuntimeError("process died after the publish")

    if cut == "after_intent":  # the retry's first step alone: the intent, as retry writes it
        found = await work.dlq.find(item_id)
        assert found is not None
        stored, entry = found
        intent = {"dlqSeq": stored.seq, "reset": False, "at": time.time(), "item": entry.workItem.model_dump()}
        await (await work.state.kv()).create(Layout.requeue_key(item_id), json.dumps(intent).encode())
    else:
        with pytest.raises(RuntimeError):
            await work.dlq.retry(item_id, False, crash if cut == "after_entry_taken" else publish_then_crash)
    assert await intents(work) == 1

    requeued = await work.dlq_retry(item_id, reset_attempts=False)  # the agent sends its call again
    assert requeued.id == item_id and requeued.attempts == 1
    assert await intents(work) == 0
    assert (await work.dlq.page(None, 10, None)).items == []
    assert await queued(work) == 1
    me = caller()
    assert (await claim_one(work, me, timeout_ms=LEASE_OVER_MS)).id == item_id
    await work.complete(me, item_id)
    assert await queued(work) == 0


async def test_recovering_a_reset_retry_cut_after_its_publish_keeps_the_requeued_items_record(
    work: WorkService,
) -> None:
    """Was: the recovery deleted the item's state record after the requeued item had been claimed and completed
    (a later complete then answered not_found, and the store kept no trace of the completion)."""
    [item_id] = await dead(work, 1)

    async def publish_then_crash(item: WorkItem, msg_id: str) -> None:
        await work.publish(item, msg_id)
        raise RuntimeError("process died after the publish")

    with pytest.raises(RuntimeError):
        await work.dlq.retry(item_id, True, publish_then_crash)
    me = caller()
    assert (await claim_one(work, me, timeout_ms=LEASE_OVER_MS)).id == item_id
    await work.complete(me, item_id)
    assert await work.dlq.recover(work.publish, older_than_s=0) == 1
    record, _ = await work.records.read(item_id)
    assert record is not None and record.state == "done"
    with pytest.raises(Conflict):
        await work.complete(me, item_id)
    assert await queued(work) == 0 and await intents(work) == 0


# -- the DLQ retry windows (issue 21, item 6) ----------------------------------------------------------------------


async def dlq_empty(work: WorkService) -> bool:
    return (await work.dlq.page(None, 10, None)).items == []


async def handed_out_once(work: WorkService, item_id: str) -> None:
    """The item is claimable exactly once from here on, and nothing of it is left anywhere after its completion."""
    me = caller()
    assert (await claim_one(work, me, timeout_ms=LEASE_OVER_MS)).id == item_id
    await work.complete(me, item_id)
    assert await claim_one(work, caller(), timeout_ms=LEASE_OVER_MS) is None
    assert await queued(work) == 0 and await dlq_empty(work) and await intents(work) == 0


async def leftover_delivery(work: WorkService, seq: int) -> Delivery:
    """A claim's pull of the dead item's leftover message, once the lease of the claimer that died ran out."""

    async def pulled() -> list[Delivery]:
        return await work._pull(CAP, 5, None, 1, wait_s=1.0)

    [delivery] = await wait_for(pulled, timeout=10, message="the leftover message is delivered again")
    assert delivery.stream_seq == seq and delivery.delivered == 2
    return delivery


async def cut_after_publish(work: WorkService, item_id: str) -> str:
    """A retry whose process died right after publishing the copy: the intent is left. Returns the copy's msg id."""
    sent: list[str] = []

    async def publish_then_crash(item: WorkItem, msg_id: str) -> None:
        await work.publish(item, msg_id)
        sent.append(msg_id)
        raise RuntimeError("process died after the publish")

    before = await queued(work)
    with pytest.raises(RuntimeError):
        await work.dlq.retry(item_id, False, publish_then_crash)
    assert await intents(work) == 1 and await queued(work) == before + 1
    return sent[0]


async def intent_value(work: WorkService, item_id: str) -> bytes:
    entry = await (await work.state.kv()).get(Layout.requeue_key(item_id))
    return entry.value or b""


async def duplicate_window_passed(work: WorkService) -> None:
    """Make the work stream forget every Nats-Msg-Id stored so far, as 120 s without a finisher would: its duplicate
    window is shortened, and a probe id stored after them all is waited on until storing it again is no longer
    dropped as a duplicate (the server forgets ids oldest first). The probes are purged afterwards."""
    js, stream = work.conn.jetstream, work.layout.work_stream
    config = (await js.stream_info(stream)).config
    config.duplicate_window = 0.2
    await js.update_stream(config)
    probe = work.layout.work_subject("window-probe", 1)
    await js.publish(probe, b"probe", stream=stream, headers={"Nats-Msg-Id": "window-probe"})

    seen = {"window": 0.2, "tries": 0}  # what a timeout reports

    async def forgotten() -> bool:
        # Every try sets the window anew, alternating 0.2 s and 0.21 s. nats-server purges its ids on a timer, and a
        # changed window makes that timer fire at once; a timer armed under a longer window (a WorkService of the
        # test that reconnects brings the stream back to its 120 s, as a server should) would otherwise hold the ids
        # that long. (Setting 0.2 s only when the window read longer passed 60 s once on a loaded CI machine.)
        current = (await js.stream_info(stream)).config
        seen["window"], seen["tries"] = current.duplicate_window or 0, seen["tries"] + 1
        current.duplicate_window = 0.2 if seen["tries"] % 2 else 0.21
        await js.update_stream(current)
        ack = await js.publish(probe, b"probe", stream=stream, headers={"Nats-Msg-Id": "window-probe"})
        return not ack.duplicate

    # A robustness limit, not a timing.
    await wait_for(forgotten, timeout=60, interval=0.1, message=lambda: f"the duplicate window passes ({seen})")
    await js.purge_stream(stream, subject=probe)


@pytest.mark.parametrize("reset", [False, True])
async def test_a_leftover_pulled_just_before_a_retry_removed_it_is_dropped(work: WorkService, reset: bool) -> None:
    """Window 1. Was: the claim that had pulled the dead item's leftover message went on after the retry and, finding
    the dead record, wrote the DLQ entry again (the item in the DLQ and in the queue); after a reset retry it found
    no record and handed the leftover out beside the requeued copy."""
    item_id = await cut_dead_letter(work)
    record, _ = await work.records.read(item_id)
    assert record is not None
    delivery = await leftover_delivery(work, record.seq)
    await work.dlq_retry(item_id, reset_attempts=reset)  # runs between the claim's pull and what it does next
    assert await work._take(caller(), CAP, delivery) is None
    assert await dlq_empty(work)
    assert await queued(work) == 1  # the requeued copy alone
    assert (await work.views.item_status(item_id)).state == "waiting"
    await handed_out_once(work, item_id)


async def test_a_leftover_pulled_just_before_a_discard_removed_it_is_dropped(work: WorkService) -> None:
    """Window 1 for a discard. Was: the discard deleted the dead record, so the claim holding the leftover found none
    and handed the discarded item out."""
    item_id = await cut_dead_letter(work)
    record, _ = await work.records.read(item_id)
    assert record is not None
    delivery = await leftover_delivery(work, record.seq)
    await work.dlq.discard(item_id)
    assert await work._take(caller(), CAP, delivery) is None
    assert await dlq_empty(work) and await queued(work) == 0
    assert await claim_one(work, caller(), timeout_ms=LEASE_OVER_MS) is None
    assert (await work.views.item_status(item_id)).state == "waiting"  # shown as before: forgotten


@pytest.mark.parametrize("settler", ["claim", "mover"])
async def test_a_dead_letter_settled_from_a_read_made_before_the_retry_is_dropped_again(
    work: WorkService, settler: str
) -> None:
    """Window 1, its narrowest form. Was: a claim (or the events mover) that had read the dead record before the
    retry began wrote the DLQ entry after the retry had taken it, and the entry stayed beside the requeued copy."""
    item_id = await cut_dead_letter(work)
    record, _ = await work.records.read(item_id)
    assert record is not None and record.state == "dead"
    delivery = await leftover_delivery(work, record.seq) if settler == "claim" else None
    stored = await work.load(record.seq)
    item = WorkItem.parse(stored.data) if stored is not None else None
    assert item is not None
    await work.dlq_retry(item_id, reset_attempts=False)
    # what the settler does next with the dead record it read: the claim answers its delivery, the mover deletes
    await work.settle_dead(item, record, reply=delivery.reply if delivery is not None else None)
    assert await dlq_empty(work)
    assert await queued(work) == 1
    await handed_out_once(work, item_id)


async def test_finishing_a_retry_cut_after_its_publish_after_the_duplicate_window_queues_no_second_copy(
    work: WorkService,
) -> None:
    """Window 2. Was: the process finishing the intent published the copy again; with the Nats-Msg-Id forgotten
    (nothing finished the intent for 120 s), the queue held the item twice."""
    [item_id] = await dead(work, 1)
    await cut_after_publish(work, item_id)
    await duplicate_window_passed(work)
    assert await work.dlq.recover(work.publish, older_than_s=0) == 1
    assert await queued(work) == 1
    await handed_out_once(work, item_id)


async def test_the_copy_is_found_behind_more_waiting_items_than_one_look_reads(work: WorkService) -> None:
    """Window 2 with a queue: the copy waits behind 150 items of the same capability and priority (the finisher
    reads 100 at a time); every item, the copy included, is handed out once."""
    [item_id] = await dead(work, 1)
    others = {await offer(work, f"other-{i}") for i in range(150)}
    await cut_after_publish(work, item_id)
    await duplicate_window_passed(work)
    assert await work.dlq.recover(work.publish, older_than_s=0) == 1
    assert await queued(work) == 151
    me, seen = caller(), []
    while got := await work.claim(me, CAP, max_items=50, timeout_ms=0):
        for item in got:
            seen.append(item.id)
            await work.complete(me, item.id)
    assert sorted(seen) == sorted([*others, item_id])
    assert await queued(work) == 0 and await intents(work) == 0


async def test_finishing_a_retry_whose_copy_was_claimed_and_completed_publishes_nothing(work: WorkService) -> None:
    """Window 2, copy already gone from the queue: the record, not the duplicate window, says it was published."""
    [item_id] = await dead(work, 1)
    await cut_after_publish(work, item_id)
    me = caller()
    assert (await claim_one(work, me)).id == item_id
    await work.complete(me, item_id)
    await duplicate_window_passed(work)
    assert await work.dlq.recover(work.publish, older_than_s=0) == 1
    assert await queued(work) == 0 and await intents(work) == 0
    assert await claim_one(work, caller(), timeout_ms=LEASE_OVER_MS) is None


async def test_a_second_copy_of_a_retry_is_never_handed_out(work: WorkService) -> None:
    """Window 2, should a second copy be stored anyway (an older release finished the intent after the window):
    the claim that meets it drops it. Was: it was handed out while the first copy was still claimed."""
    [item_id] = await dead(work, 1)
    token = await cut_after_publish(work, item_id)
    me = caller()
    first = await claim_one(work, me)
    assert first.id == item_id
    await duplicate_window_passed(work)
    intent = json.loads(await intent_value(work, item_id))
    await work.publish(WorkItem.model_validate(intent["item"]), token)  # what the old finisher did
    assert await queued(work) == 2
    assert await claim_one(work, caller()) is None  # the second copy is dropped, not handed out
    assert await queued(work) == 1
    await work.complete(me, item_id)
    assert await work.dlq.recover(work.publish, older_than_s=0) == 1  # finishes the intent, publishes nothing
    assert await queued(work) == 0 and await intents(work) == 0 and await dlq_empty(work)


async def test_a_stale_entry_left_by_a_cut_settle_is_dropped_by_a_retry_or_discard(work: WorkService) -> None:
    """The one step the re-check of a settle cannot cover: it dies between writing a stale entry and dropping it.
    A retry or discard of that entry must not requeue (or kill) the item a second time."""
    [item_id] = await dead(work, 1)
    stale = (await work.dlq.page(None, 10, None)).items[0]
    await work.dlq_retry(item_id, reset_attempts=False)
    for action in ("retry", "discard"):
        assert await work.dlq.add(stale)  # the stale write, its process dead before the re-check
        with pytest.raises(NotFound):
            if action == "retry":
                await work.dlq_retry(item_id, reset_attempts=False)
            else:
                await work.dlq.discard(item_id)
        assert await dlq_empty(work)
        assert await queued(work) == 1
    await handed_out_once(work, item_id)


async def test_an_abandoned_retry_is_finished_by_another_process_within_seconds(
    tmp_path: Path, nats_server: NatsServer, work: WorkService
) -> None:
    """Was: 15 to 45 s (an intent was abandoned after 15 s, looked for every 30 s). Now any process running the
    events mover finishes it in a few seconds (bench/dlq_recover.py measures how many); this waits up to 20 s."""
    [item_id] = await dead(work, 1)
    with pytest.raises(RuntimeError):
        await work.dlq.retry(item_id, False, crash)
    assert await intents(work) == 1 and await queued(work) == 0
    async with service(tmp_path, nats_server) as other:
        events = WorkEvents(other.conn, other)
        events.start()
        try:

            async def finished() -> bool:
                return await intents(work) == 0 and await queued(work) == 1

            await wait_for(finished, timeout=20, interval=0.1, message="another process finishes the retry")
        finally:
            await events.stop()
    await handed_out_once(work, item_id)
