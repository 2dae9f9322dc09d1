"""The reservation boundary: acquire, renew, release and list advisory leases on project resources, in NATS.

All of a namespace's reservations live in one KV key (``bus/layout.py``: the reservation table), written by
compare-and-set: an acquire of up to 100 resources reads the table, checks every requested pattern against every
live reservation, and writes the table with the new reservation in one CAS — all or nothing, correct with any
number of server processes (a lost CAS is read again and decided again). The table also holds the fencing
counter, so a token is never handed out twice, also after every server restarted. Expired reservations are
ignored when read and dropped by the next write; a holder whose registry entry reads offline for longer than
its reservation's TTL loses it the same way. A waiting acquire sleeps on the process's one watch of the key
(``waits.py``), not in a poll loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from nats_mcp.bus import specs
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import KeyNotFound, WrongLastSequence, nats_edge
from nats_mcp.bus.jstypes import KeyValue
from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.layout import Layout
from nats_mcp.coord import capscope
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import Conflict as ConflictError
from nats_mcp.coord.errors import Forbidden, InvalidArgument, InvalidName, LimitExceeded, NotFound, nats_errors
from nats_mcp.coord.registry.visibility import format_time
from nats_mcp.coord.reservations.models import Conflict, Mode, Outcome, Reservation, Table
from nats_mcp.coord.reservations.waits import SharedWatch
from nats_mcp.core import pathglob
from nats_mcp.core.names import InvalidNameError, validate_guid, validate_uuid
from nats_mcp.core.reqctx import new_uuid

MAX_RESOURCES = 100
DEFAULT_TTL_S = 1800
MAX_TTL_S = 86_400
MAX_WAIT_MS = 120_000
MAX_PER_AGENT = 100
"""Live reservations one agent may hold at once (the table is one KV value; this bounds its size)."""
MAX_TABLE_BYTES = 900_000
"""Under NATS's default 1 MiB payload limit."""
MAX_REASON = 500
_CAS_ATTEMPTS = 64
_WAKE_SPREAD_S = 0.02

OfflineSince = Callable[[str], float | None]
"""Agent GUID -> when it was last heard of if it reads offline now, else None (the registry's presence)."""


def checked_resources(resources: list[str]) -> list[str]:
    """The requested resources normalised and de-duplicated, in the given order; InvalidArgument otherwise."""
    if not resources:
        raise InvalidArgument("resources must name at least one path or glob")
    if len(resources) > MAX_RESOURCES:
        raise InvalidArgument(f"{len(resources)} resources given; at most {MAX_RESOURCES} per reservation")
    try:
        return list(dict.fromkeys(pathglob.normalise(r) for r in resources))
    except pathglob.BadPath as exc:
        raise InvalidArgument(str(exc)) from None


def checked_id(reservation_id: object) -> str:
    try:
        return validate_uuid(reservation_id, "reservationId")
    except InvalidNameError as exc:
        raise InvalidArgument(str(exc)) from None


def _conflicts(table: list[Reservation], wanted: list[str], mode: Mode, guid: str) -> list[Conflict]:
    found: list[Conflict] = []
    for held in table:
        if held.holderGuid == guid or (mode == "shared" and held.mode == "shared"):
            continue  # an agent does not conflict with itself; shared readers share
        for resource in wanted:
            other = next((h for h in held.resources if pathglob.overlap(resource, h)), None)
            if other is not None:
                found.append(
                    Conflict(
                        resource=resource,
                        heldResource=other,
                        reservationId=held.reservationId,
                        holderGuid=held.holderGuid,
                        holderHandle=held.holderHandle,
                        mode=held.mode,
                        reason=held.reason,
                        expiresAt=held.expiresAt,
                    )
                )
    return found


class ReservationService:
    """The reservations of one namespace."""

    def __init__(
        self, conn: NatsConnection, layout: Layout, offline_since: OfflineSince, *, read_only: bool = False
    ) -> None:
        self.namespace = layout.namespace
        self.bucket = Bucket.declared(conn, specs.reservations_bucket(layout), create=not read_only)
        self._offline_since = offline_since
        self._watch = SharedWatch(self.bucket, Layout.RESERVATIONS_KEY)

    async def ensure(self) -> None:
        with nats_errors():
            await self.bucket.kv()

    async def close(self) -> None:
        await self._watch.close()

    # -- the table -------------------------------------------------------------------------------

    async def _read(self, kv: KeyValue) -> tuple[int, Table]:
        """(revision, table); revision 0 when there is none yet. An unreadable table is an internal error, never
        silently replaced: its fencing counter must not go back."""
        try:
            with nats_errors(), nats_edge():
                entry = await kv.get(Layout.RESERVATIONS_KEY)
        except KeyNotFound:
            return 0, Table()
        return int(entry.revision or 0), self._decode(entry.value)

    @staticmethod
    def _decode(raw: bytes | None) -> Table:
        if not raw:  # deleted (an operator purged the key): start over from the empty table
            return Table()
        return Table.model_validate_json(raw)

    async def _write(self, kv: KeyValue, revision: int, table: Table) -> bool:
        data = table.model_dump_json().encode()
        if len(data) > MAX_TABLE_BYTES:
            raise LimitExceeded("the namespace's reservation table is full; release reservations and retry")
        try:
            with nats_errors(), nats_edge():
                if revision:
                    await kv.update(Layout.RESERVATIONS_KEY, data, last=revision)
                else:
                    await kv.create(Layout.RESERVATIONS_KEY, data)
        except WrongLastSequence:
            return False
        return True

    def alive(self, r: Reservation, now: float) -> bool:
        """Not expired, and its holder not offline for longer than its TTL."""
        if r.expires <= now:
            return False
        since = self._offline_since(r.holderGuid)
        return since is None or since + r.ttlSeconds > now

    def _end(self, r: Reservation) -> float:
        """When ``r`` ends if nothing changes (its expiry, or earlier when its holder is offline)."""
        since = self._offline_since(r.holderGuid)
        return r.expires if since is None else min(r.expires, since + r.ttlSeconds)

    async def _change(
        self, change: Callable[[Table, float], tuple[Table, Any] | None], known: tuple[int, Table] | None = None
    ) -> Any:
        """Apply ``change`` (table, now) -> (new table, result) by CAS, the dead reservations dropped first;
        ``change`` returning None writes nothing (and the result is None). ``known``: a (revision, table) just
        read, tried first (a stale one only costs a lost CAS)."""
        kv = await self.bucket.kv()
        for attempt in range(_CAS_ATTEMPTS):
            revision, table = known or await self._read(kv)
            known = None
            now = time.time()
            live = table.model_copy(update={"reservations": [r for r in table.reservations if self.alive(r, now)]})
            changed = change(live, now)
            if changed is None:
                return None
            new, result = changed
            if await self._write(kv, revision, new):
                return result
            # Lost the race to another writer: back off a little (random, growing) so contenders spread out.
            await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))  # noqa: S311 - not security
        raise ConflictError("the reservation table kept changing under concurrent writers; retry")

    # -- operations ------------------------------------------------------------------------------

    async def acquire(
        self,
        caller: Caller,
        handle: str | None,
        resources: list[str],
        *,
        mode: Mode = "exclusive",
        ttl_s: int = DEFAULT_TTL_S,
        reason: str = "",
        wait_ms: int = 0,
    ) -> Outcome:
        """Reserve every resource or none; wait up to ``wait_ms`` for conflicts to clear (woken by a watch)."""
        wanted = checked_resources(resources)
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise InvalidArgument(f"ttlSeconds must be from 1 to {MAX_TTL_S}")
        if not 0 <= wait_ms <= MAX_WAIT_MS:
            raise InvalidArgument(f"waitMs must be from 0 to {MAX_WAIT_MS}")
        if len(reason) > MAX_REASON:
            raise InvalidArgument(f"reason is longer than {MAX_REASON} characters")
        reservation_id = new_uuid()  # drawn first: a resent call derives the same id (core/reqctx.py)
        started = time.monotonic()
        deadline = started + wait_ms / 1000

        def grant(table: Table, now: float) -> tuple[Table, Outcome]:
            again = next((r for r in table.reservations if r.reservationId == reservation_id), None)
            if again is not None and again.holderGuid == caller.guid:
                # A resent call re-run after its first attempt wrote (same derived id): that grant is the answer.
                return table, Outcome(granted=True, reservation=again)
            conflicts = _conflicts(table.reservations, wanted, mode, caller.guid)
            if conflicts:
                return table, Outcome(granted=False, conflicts=conflicts)
            if sum(r.holderGuid == caller.guid for r in table.reservations) >= MAX_PER_AGENT:
                raise LimitExceeded(f"this agent holds {MAX_PER_AGENT} reservations already; release some first")
            token = table.fence + 1
            made = Reservation(
                reservationId=reservation_id,
                holderGuid=caller.guid,
                holderHandle=handle,
                resources=wanted,
                mode=mode,
                reason=reason,
                ttlSeconds=ttl_s,
                fencingToken=token,
                acquiredAt=format_time(now),
                expiresAt=format_time(now + ttl_s),
                expires=now + ttl_s,
            )
            new = Table(fence=token, reservations=[*table.reservations, made])
            return new, Outcome(granted=True, reservation=made)

        kv = await self.bucket.kv()
        async with contextlib.AsyncExitStack() as stack:
            watch = await stack.enter_async_context(self._watch.joined()) if wait_ms else None
            seen: tuple[int, Table] | None = None
            while True:
                woken, (revision, table) = seen is not None, seen or await self._read(kv)
                seen = None
                now = time.time()
                live = [r for r in table.reservations if self.alive(r, now)]
                conflicts = _conflicts(live, wanted, mode, caller.guid)
                if not conflicts and woken and watch is not None:
                    # Every waiter woke on the same release: each first waits a random moment on the watch, so
                    # the first to try takes it and the others learn so from the watch, not from lost CAS rounds.
                    pause = random.uniform(0, _WAKE_SPREAD_S)  # noqa: S311 - not security
                    change = await watch.changed(revision, min(pause, max(deadline - time.monotonic(), 0.0)))
                    if change is not None:
                        seen = change[0], self._decode(change[1])
                        continue
                if not conflicts:
                    outcome: Outcome | None = await self._change(
                        lambda t, n: self._grant_or_none(grant(t, n)), (revision, table)
                    )
                    if outcome is not None:
                        return outcome.model_copy(update={"waitedMs": int((time.monotonic() - started) * 1000)})
                    continue  # a conflict appeared between the read and the write: decide again
                left = deadline - time.monotonic()
                if watch is None or left <= 0:
                    waited = int((time.monotonic() - started) * 1000)
                    return Outcome(granted=False, conflicts=conflicts, waitedMs=waited)
                # Wake on the next change of the table, or when the first conflicting reservation ends by itself.
                ends = min(self._end(r) for r in live if r.reservationId in {c.reservationId for c in conflicts})
                change = await watch.changed(revision, min(left, max(ends - now, 0.0) + 0.05))
                if change is not None:
                    seen = change[0], self._decode(change[1])

    @staticmethod
    def _grant_or_none(result: tuple[Table, Outcome]) -> tuple[Table, Outcome] | None:
        """A refusal inside the CAS writes nothing: the caller reads again and waits or refuses."""
        return result if result[1].granted else None

    async def renew(self, caller: Caller, reservation_id: str, ttl_s: int | None = None) -> Reservation:
        """Extend the caller's live reservation to now + ``ttl_s`` (its own TTL when None); same token."""
        if ttl_s is not None and not 1 <= ttl_s <= MAX_TTL_S:
            raise InvalidArgument(f"ttlSeconds must be from 1 to {MAX_TTL_S}")
        reservation_id = checked_id(reservation_id)

        def renew(table: Table, now: float) -> tuple[Table, Reservation]:
            held = self._own(table, caller, reservation_id)
            ttl = ttl_s if ttl_s is not None else held.ttlSeconds
            renewed = held.model_copy(
                update={"ttlSeconds": ttl, "expires": now + ttl, "expiresAt": format_time(now + ttl)}
            )
            rest = [renewed if r.reservationId == reservation_id else r for r in table.reservations]
            return table.model_copy(update={"reservations": rest}), renewed

        result: Reservation = await self._change(renew)
        return result

    async def release(self, caller: Caller, reservation_id: str) -> Reservation:
        """End the caller's reservation now."""
        reservation_id = checked_id(reservation_id)

        def release(table: Table, _now: float) -> tuple[Table, Reservation]:
            held = self._own(table, caller, reservation_id)
            return self._without(table, {held.reservationId}), held

        result: Reservation = await self._change(release)
        return result

    async def force_release(self, reservation_id: str) -> Reservation:
        """End anyone's reservation (the admin operation; the guard audits the call)."""
        reservation_id = checked_id(reservation_id)

        def release(table: Table, _now: float) -> tuple[Table, Reservation]:
            held = next((r for r in table.reservations if r.reservationId == reservation_id), None)
            if held is None:
                raise NotFound(f"reservation {reservation_id} not found (released or expired)")
            return self._without(table, {reservation_id}), held

        result: Reservation = await self._change(release)
        return result

    async def release_agent(self, guid: str) -> int:
        """End every reservation of the agent ``guid`` (it deregistered); how many there were."""

        def release(table: Table, _now: float) -> tuple[Table, int] | None:
            ids = {r.reservationId for r in table.reservations if r.holderGuid == guid}
            return (self._without(table, ids), len(ids)) if ids else None

        result: int | None = await self._change(release)
        return result or 0

    async def current(self, *, resource: str | None = None, holder: str | None = None) -> list[Reservation]:
        """The namespace's live reservations, oldest first; only those overlapping ``resource`` / of ``holder``, and
        (in a tool call) those of paths the caller's policy lets it reserve (``coord/capscope.py``)."""
        pattern = checked_resources([resource])[0] if resource is not None else None
        if holder is not None:
            try:
                validate_guid(holder, "holderGuid")
            except InvalidNameError as exc:
                raise InvalidName(str(exc)) from None
        kv = await self.bucket.kv()
        _, table = await self._read(kv)
        now = time.time()
        return [
            r
            for r in table.reservations
            if self.alive(r, now)
            and (holder is None or r.holderGuid == holder)
            and (pattern is None or any(pathglob.overlap(pattern, h) for h in r.resources))
            and any(capscope.reservation_visible(h) for h in r.resources)
        ]

    @staticmethod
    def _own(table: Table, caller: Caller, reservation_id: str) -> Reservation:
        held = next((r for r in table.reservations if r.reservationId == reservation_id), None)
        if held is None:
            raise NotFound(f"reservation {reservation_id} not found (released, expired, or never made)")
        if held.holderGuid != caller.guid:
            raise Forbidden(f"reservation {reservation_id} belongs to another agent; only its holder may change it")
        return held

    @staticmethod
    def _without(table: Table, ids: set[str]) -> Table:
        return table.model_copy(update={"reservations": [r for r in table.reservations if r.reservationId not in ids]})


def decode_table(raw: bytes) -> Table | None:
    """A stored table, or None for a value this project did not write (for read-only views)."""
    try:
        return Table.model_validate_json(raw)
    except (ValidationError, json.JSONDecodeError):
        return None
