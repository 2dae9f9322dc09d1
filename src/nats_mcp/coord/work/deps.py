"""The work-dependency boundary: items broadcast with ``dependsOn`` wait out of the queue until released.

A blocked item is not in the work stream at all (so no claim and no consumer redelivery ever meets it): its
submission record (:mod:`nats_mcp.coord.work.submissions`) holds it. It is published when its last dependency
completes, with a ``Nats-Msg-Id`` of its own, then the record is moved to ``pending`` by compare-and-set; if a
dependency is dead-lettered (or cancelled), the record moves to ``dead`` and the item is dead-lettered with reason
``dependency_failed`` naming it. A DLQ retry of that dependency retries its ``dependency_failed`` dependents too:
they are blocked again on it, so the chain goes on when it completes.

Who releases: the process that settles a dependency (complete, dead-letter, cancel) looks at its dependents; a
broadcast whose dependencies are all done releases at once (so of a broadcast racing a completion, one of the two
sees the other's write). If that process dies in between, each server process's events loop sweeps the
``blocked.*`` list (:meth:`Dependencies.sweep`) and finishes what it finds, every step being re-doable: the
release's ``Nats-Msg-Id`` drops a repeat within the stream's duplicate window, and a second copy published after it
is dropped at claim (the submission names the sequence it was released with; :meth:`Dependencies.admit`).

Cycles cannot be formed: ``dependsOn`` may only name items that exist when the broadcast is made, and an item's
id is made at its broadcast, so every edge points from a newer item to an older one.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Literal, Protocol

from nats_mcp.coord.checks import timestamp
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import Conflict, InvalidArgument, NotFound
from nats_mcp.coord.models import WorkItem
from nats_mcp.coord.work.store import ItemRecord, ItemRecords
from nats_mcp.coord.work.submissions import Submission, Submissions, blocked_key, rdep_key
from nats_mcp.core.names import InvalidNameError, validate_uuid

log = logging.getLogger("nats_mcp.coord.work.deps")

MAX_DEPENDS = 50
MAX_SWEEP = 200
"""Blocked items one sweep looks at (each costs a read of it and two per dependency)."""
ORPHAN_AFTER_S = 30.0
"""A blocked mark without a submission this old is dropped by the sweep (a broadcast writes the mark first)."""
RELEASE_PREFIX = "release-"
FAILED_STATES = ("dead", "cancelled", "discarded")
Standing = Literal["done", "waiting", "failed"]
DeadReason = Literal["unrecoverable", "max_attempts", "deadline_passed", "dependency_failed"]


class Host(Protocol):
    """What dependencies need of the work service."""

    records: ItemRecords

    async def enqueue(self, item: WorkItem, msg_id: str) -> int: ...

    async def dead_letter(
        self,
        item: WorkItem,
        base: ItemRecord,
        revision: int,
        reason: DeadReason,
        attempts: int,
        *,
        reply: str | None = None,
    ) -> bool: ...


_settling: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("nmcp_dep_settling", default=None)
_retrying: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("nmcp_dep_retrying", default=None)


async def _cascade(
    var: contextvars.ContextVar[list[str] | None], item_id: str, step: Callable[[str], Awaitable[None]]
) -> None:
    """Run ``step`` for ``item_id``, and for every id a nested call (in the same task) hands in meanwhile, as a loop."""
    queue = var.get()
    if queue is not None:
        queue.append(item_id)  # an outer call of this task runs it
        return
    queue = [item_id]
    token = var.set(queue)
    try:
        while queue:
            await step(queue.pop(0))
    finally:
        var.reset(token)


def check_depends_on(depends_on: object) -> list[str]:
    """The dependency ids, checked (a list of 1 to 50 distinct item ids); raises invalid_argument."""
    if not isinstance(depends_on, list) or not 1 <= len(depends_on) <= MAX_DEPENDS:
        raise InvalidArgument(f"dependsOn must be a list of 1 to {MAX_DEPENDS} work item ids")
    try:
        ids = [validate_uuid(d, "dependsOn") for d in depends_on]
    except InvalidNameError as exc:
        raise InvalidArgument(str(exc)) from None
    if len(set(ids)) != len(ids):
        raise InvalidArgument("dependsOn names an item more than once")
    return ids


class Dependencies:
    """Blocked items of one namespace: submitted, released, failed, swept."""

    def __init__(self, host: Host, subs: Submissions) -> None:
        self._host = host
        self.subs = subs
        self._retry: Callable[[str], Awaitable[object]] | None = None

    def on_retry(self, retry: Callable[[str], Awaitable[object]]) -> None:
        """How to retry a dead-lettered item from the DLQ (to revive dependents when their dependency is retried)."""
        self._retry = retry

    # -- standing of a dependency ---------------------------------------------------------------------

    async def standing(self, item_id: str) -> tuple[Standing, bool]:
        """Whether an item counts as done, still to come, or failed for its dependents; and whether it exists."""
        (record, _), (sub, _) = await asyncio.gather(self._host.records.read(item_id), self.subs.read(item_id))
        if record is not None:
            if record.state == "done":
                return "done", True
            return ("failed" if record.state in FAILED_STATES else "waiting"), True
        if sub is not None and sub.state in ("dead", "cancelled"):
            return "failed", True
        return "waiting", sub is not None

    async def check_existing(self, ids: list[str]) -> None:
        """Every id must name an item that exists and has not failed (nothing is written when one does not)."""
        standings = await asyncio.gather(*(self.standing(d) for d in ids))
        for dep, (standing, exists) in zip(ids, standings, strict=True):
            if not exists:
                raise NotFound(f"dependsOn names {dep}, which is no work item of this namespace (or is forgotten)")
            if standing == "failed":
                raise Conflict(f"dependency {dep} was dead-lettered or cancelled; retry it from the DLQ first")

    # -- submit -------------------------------------------------------------------------------------

    async def submit(self, caller: Caller, item: WorkItem) -> None:
        """Store a new blocked item and its edges, then release it at once if every dependency is done."""
        deps = list(item.dependsOn or [])
        # Edges and the blocked mark first: a crash before the submission leaves only marks the sweeper drops.
        await asyncio.gather(*(self.subs.put(rdep_key(d, item.id)) for d in deps))
        await self.subs.put(blocked_key(item.id), str(time.time()).encode())
        sub = Submission(
            state="blocked",
            offered_by=caller.guid,
            capability=item.capability,
            boundary=item.boundary,
            task_id=item.taskId,
            depends_on=deps,
            item=item.model_dump(exclude_none=True, exclude={"leaseExpiresAt"}),
            msg_id=f"{RELEASE_PREFIX}{item.id}",
        )
        if await self.subs.write(item.id, sub, 0) is None:
            # The same broadcast again (a resend: the item id comes from the request) finishes what it began.
            found, _ = await self.subs.read(item.id)
            if found is None or found.offered_by != caller.guid or found.depends_on != deps:
                raise Conflict(f"work item {item.id} exists already")
        await self.settle(item.id)

    async def block(self, item: WorkItem, msg_id: str) -> None:
        """Put a dependent item back to blocked (a DLQ retry of it): it is released again when its dependencies
        are done, with ``msg_id`` (the retry's copy name). Doing it again is harmless."""
        await self.subs.put(blocked_key(item.id), str(time.time()).encode())
        for _ in range(5):
            sub, revision = await self.subs.read(item.id)
            if sub is not None and sub.msg_id == msg_id and sub.state in ("blocked", "pending"):
                break  # this retry's block was written already
            fresh = Submission(
                state="blocked",
                offered_by=sub.offered_by if sub is not None else item.offeredBy,
                capability=item.capability,
                boundary=item.boundary,
                task_id=item.taskId,
                depends_on=list(item.dependsOn or []),
                item=item.model_dump(exclude_none=True, exclude={"leaseExpiresAt"}),
                msg_id=msg_id,
            )
            if await self.subs.write(item.id, fresh, revision) is not None:
                break
        await self.settle(item.id)

    # -- settle -------------------------------------------------------------------------------------

    async def settle(self, item_id: str) -> None:
        """Move a blocked item on if it can (released, or dead-lettered), and finish a move left half done."""
        for _ in range(5):
            sub, revision = await self.subs.read(item_id)
            if sub is None:
                return  # a broadcast on its way (its mark comes first), or one that died: see sweep
            if sub.state in ("pending", "cancelled"):
                await self.subs.unblock(item_id)  # nothing (left) to do
                return
            if sub.state == "blocked":
                standings = await asyncio.gather(*(self.standing(d) for d in sub.depends_on))
                failed = next((d for d, (s, _) in zip(sub.depends_on, standings, strict=True) if s == "failed"), None)
                if failed is not None:
                    dead = replace(sub, state="dead", dependency=failed)
                    if await self.subs.write(item_id, dead, revision) is None:
                        continue
                    sub = dead
                elif all(s == "done" for s, _ in standings):
                    if not await self._release(item_id, sub, revision):
                        continue
                    await self.subs.unblock(item_id)
                    return
                else:
                    return  # still waiting: stays on the blocked list
            await self._dead_letter(item_id, sub)
            await self.subs.unblock(item_id)
            return

    async def _release(self, item_id: str, sub: Submission, revision: int) -> bool:
        """Publish the item, then record where it went; False if the submission moved meanwhile."""
        if sub.item is None or sub.msg_id is None:
            return True
        item = WorkItem.model_validate(sub.item)
        seq = await self._host.enqueue(item, sub.msg_id)
        if await self.subs.write(item_id, replace(sub, state="pending", seq=seq), revision) is None:
            return False  # e.g. cancelled meanwhile: that copy is dropped at claim (admit)
        log.info("work item %s released: its dependencies completed", item_id)
        return True

    async def _dead_letter(self, item_id: str, sub: Submission) -> None:
        """Dead-letter a blocked item whose dependency failed (once: the state record decides)."""
        if sub.item is None:
            return
        item = WorkItem.model_validate(sub.item)
        dep = sub.dependency or "?"
        for _ in range(3):
            record, revision = await self._host.records.read(item_id)
            if record is not None and (record.state in FAILED_STATES or record.state == "done"):
                return  # decided already
            if record is not None and record.requeue != sub.msg_id:
                return  # a DLQ retry took it out meanwhile (its block of the item is on the way): not dead again
            errors = list(record.errors) if record is not None else []
            base = ItemRecord(state="dead", seq=0, errors=errors, dependency=dep)
            base = base.with_error(f"{timestamp()} dependency {dep} was dead-lettered or cancelled")
            attempts = record.attempts if record is not None else item.attempts
            if await self._host.dead_letter(item, base, revision, "dependency_failed", attempts):
                return

    async def on_settled(self, item_id: str) -> None:
        """``item_id`` completed, died or was cancelled: move its blocked dependents on. A dependent dead-lettered
        here settles its own dependents in turn: queued in this same loop rather than nested (a long chain would
        otherwise nest a call per link)."""
        await _cascade(_settling, item_id, self._settle_dependents)

    async def _settle_dependents(self, item_id: str) -> None:
        for dependent in await self.subs.dependents(item_id):
            try:
                await self.settle(dependent)
            except Exception:  # the sweeper finishes it
                log.warning("could not settle work item %s after %s", dependent, item_id, exc_info=True)

    async def on_retried(self, item_id: str) -> None:
        """``item_id`` went back to its queue from the DLQ: retry its dependents that died of it (and theirs)."""
        await _cascade(_retrying, item_id, self._retry_dependents)

    async def _retry_dependents(self, item_id: str) -> None:
        if self._retry is None:
            return
        for dependent in await self.subs.dependents(item_id):
            sub, _ = await self.subs.read(dependent)
            if sub is None or sub.state != "dead" or sub.dependency != item_id:
                continue
            try:
                await self._retry(dependent)
            except (NotFound, Conflict):
                continue  # retried or discarded by someone else meanwhile

    async def sweep(self) -> int:
        """Finish what the blocked list still names (a releaser that died half way); returns how many were looked at."""
        names = await self.subs.blocked()
        if len(names) > MAX_SWEEP:  # a random share each round: every item is looked at, the round stays bounded
            names = random.sample(names, MAX_SWEEP)
        for item_id in names:
            try:
                await self.settle(item_id)
                if (await self.subs.read(item_id))[0] is None and await self.subs.mark_age(item_id) > ORPHAN_AFTER_S:
                    await self.subs.unblock(item_id)  # a broadcast that died before writing the submission
            except Exception:
                log.warning("sweeping blocked work item %s failed", item_id, exc_info=True)
        return len(names)

    # -- claim side ---------------------------------------------------------------------------------

    async def admit(self, item: WorkItem, seq: int) -> str | None:
        """Why a dependent item's message at ``seq`` must not be handed out, or None when it may be."""
        for _ in range(3):
            sub, revision = await self.subs.read(item.id)
            if sub is None:
                return None
            if sub.state == "cancelled":
                return "the item was cancelled"
            if sub.state == "pending":
                return None if sub.seq in (0, seq) else "a second copy of a release"
            if sub.state == "blocked":  # released by a process that died before recording it: this is the copy
                if await self.subs.write(item.id, replace(sub, state="pending", seq=seq), revision) is not None:
                    return None
                continue
            return "the item was dead-lettered (a dependency failed)"
        return None
