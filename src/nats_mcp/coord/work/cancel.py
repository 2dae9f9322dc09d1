"""The work-cancel boundary: the submitter (or an admin) withdraws an item that is not finished.

A queued or blocked item is removed: its state record becomes ``cancelled`` (created by compare-and-set, so of
a cancel and a claim racing for a queued item exactly one wins), then its queue message is deleted (a copy
that escapes the delete is dropped by the claim that meets it: :func:`nats_mcp.coord.work.copies.stale_copy`).
A claimed item is only marked: the claimer's next progress, complete or fail answers ``cancelled`` and settles
it (:mod:`nats_mcp.coord.work.settle`), and a lease that runs out meanwhile ends in ``cancelled`` too. Blocked
dependents of a cancelled item are dead-lettered with reason ``dependency_failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Literal, Protocol

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.streamops import delete_msg
from nats_mcp.coord.checks import timestamp
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import Conflict, Forbidden, NotFound, nats_errors
from nats_mcp.coord.work.deps import Dependencies
from nats_mcp.coord.work.dlq import DlqService, check_item_id
from nats_mcp.coord.work.store import ItemRecord, ItemRecords
from nats_mcp.coord.work.submissions import Submission, Submissions

log = logging.getLogger("nats_mcp.coord.work.cancel")

CancelOutcome = Literal["cancelled", "cancel_requested"]


class Source(Protocol):
    conn: NatsConnection
    layout: Layout
    api: str
    records: ItemRecords
    subs: Submissions
    deps: Dependencies
    dlq: DlqService


async def cancel(work: Source, caller: Caller, item_id: str, *, admin: bool = False) -> CancelOutcome:
    """Cancel ``item_id`` for its submitter (any item for an ``admin``): removed if queued or blocked, marked if
    claimed. Cancelling a cancelled item again answers ``cancelled``."""
    check_item_id(item_id, "workItemId")
    with nats_errors():
        for _ in range(5):
            (record, rrev), (sub, srev) = await asyncio.gather(work.records.read(item_id), work.subs.read(item_id))
            owner = sub.offered_by if sub is not None else None
            if record is None and sub is None:
                found = await work.dlq.find(item_id)
                if found is not None and (admin or found[1].workItem.offeredBy == caller.guid):
                    raise Conflict(f"work item {item_id} is dead-lettered; discard it with warp_dlq_discard")
                raise NotFound(f"no work item {item_id} (or it was settled long enough ago to be forgotten)")
            if not admin and owner != caller.guid:
                raise Forbidden(f"only the submitter of work item {item_id} (or an admin) may cancel it")
            outcome = await _step(work, item_id, record, rrev, sub, srev)
            if outcome is not None:
                return outcome
    raise Conflict(f"work item {item_id} keeps changing; try again")


async def _step(
    work: Source, item_id: str, record: ItemRecord | None, rrev: int, sub: Submission | None, srev: int
) -> CancelOutcome | None:
    """One attempt from what was read; None when a record moved meanwhile (read again)."""
    state = record.state if record is not None else None
    if state == "cancelled" or (record is None and sub is not None and sub.state == "cancelled"):
        return "cancelled"
    if state == "done":
        raise Conflict(f"work item {item_id} is already completed")
    if state in ("dead", "discarded") or (record is None and sub is not None and sub.state == "dead"):
        raise Conflict(f"work item {item_id} is dead-lettered; discard it with warp_dlq_discard")
    if record is not None and state == "claimed":
        if record.cancelled:
            return "cancel_requested"
        marked = await work.records.write(item_id, replace(record, cancelled=True), rrev)
        return "cancel_requested" if marked is not None else None
    if sub is not None and sub.state == "blocked":
        # The submission decides for a blocked item (a release writes it too): then the record follows.
        if await work.subs.write(item_id, replace(sub, state="cancelled"), srev) is None:
            return None
        await _record_cancelled(work, item_id, record, rrev, 0)
        await work.subs.unblock(item_id)
    else:
        seq = record.seq if record is not None else (sub.seq if sub is not None else 0)
        if await _write(work, item_id, record, rrev, seq) is None:
            return None  # e.g. claimed meanwhile: the next look marks the claim
        for stale in {seq, sub.seq if sub is not None else 0} - {0}:
            with contextlib.suppress(Exception):  # one left behind is dropped by the claim that meets it
                await delete_msg(work.conn.client, work.layout.work_stream, stale, prefix=work.api)
        if sub is not None:
            with contextlib.suppress(Exception):  # (the state record decided; this is for the record)
                await work.subs.write(item_id, replace(sub, state="cancelled"), srev)
    try:
        await work.deps.on_settled(item_id)
    except Exception:  # the sweeper dead-letters its dependents
        log.warning("settling the dependents of cancelled work item %s failed", item_id, exc_info=True)
    return "cancelled"


async def _write(work: Source, item_id: str, record: ItemRecord | None, revision: int, seq: int) -> int | None:
    base = record if record is not None else ItemRecord(state="cancelled", seq=seq)
    gone = replace(base, state="cancelled", settled_at=timestamp(), reply=None, lease_expires=0.0, claimer=None)
    return await work.records.write(item_id, gone, revision)


async def _record_cancelled(work: Source, item_id: str, record: ItemRecord | None, revision: int, seq: int) -> None:
    """The state record of a cancelled blocked item says so too (what dependents and work_get read first)."""
    for _ in range(3):
        if await _write(work, item_id, record, revision, seq) is not None:
            return
        record, revision = await work.records.read(item_id)
        if record is not None and record.state == "cancelled":
            return
