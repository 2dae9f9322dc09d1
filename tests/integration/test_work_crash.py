"""Boundary of work and DLQ steps a dying process cut off, against a real nats-server: each half-done state is made
with the code's own first steps, then abandoned; what the next call (or the recovery) does with it must lose nothing
and hand nothing out twice. Found while building tests/chaos/test_server_kill.py."""

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
from nats_mcp.coord.checks import timestamp
from nats_mcp.coord.errors import Conflict
from nats_mcp.coord.models import DlqItem, WorkItem
from nats_mcp.coord.work.service import WorkService
from tests.support.natsserver import NatsServer
from tests.support.work_service import caller, claim_one, dead, offer, service

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
