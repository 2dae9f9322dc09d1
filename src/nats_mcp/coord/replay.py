"""The replay boundary: one KV record per deduplicated tool call, so a resend gets its first outcome, not a new effect.

A client that lost its connection mid-call sends the same JSON-RPC request again, possibly to another server
process (sessions live in NATS), possibly after the first process died. The call's **token** is a sha256 of
(principal, MCP session id, request id) (:func:`call_token`): the principal is in it so nobody can reach another
caller's record by guessing a session id. Its record in the namespace's calls bucket (``Layout.calls_bucket``,
TTL :data:`WINDOW_S` after the last write) goes through these states:

* **absent** -> the attempt *creates* it ("running", this process as owner, a lease) atomically (KV create): of
  two racing attempts exactly one runs the tool.
* **running** -> the owner renews the lease every third of :data:`LEASE_S` while the tool runs; when the tool
  returns it writes "done" with the outcome (the tool's result as JSON), or deletes the record when the outcome
  says "try again" (NATS was away: nothing to replay). A tool that raises or is cancelled deletes it too.
* A resend that finds **done** answers the stored outcome (same message id, sequence, item id); one with another
  fingerprint (tool and arguments) is a different call reusing the request id and is refused. One that finds
  **running** waits up to :data:`WAIT_S` for the outcome; a lease that ran out means the owner is dead (it
  renews while alive), and the resend takes the record over (compare-and-set) and runs the tool again. Leases are
  wall-clock times, so the processes' clocks must agree to well within :data:`LEASE_S` (NTP does).

That re-run is why a record alone is not enough: the first owner may have died after its effect and before
writing "done". Every attempt runs inside :func:`nats_mcp.core.reqctx.effects` with the token, so the ids of the
records it stores (channel message, DM, work item; and so their ``Nats-Msg-Id``) are derived from the token: the
re-run's publish is dropped by the stream as a duplicate and answers the first id and sequence (the answer's
timestamp is the re-run's). That holds within the streams' duplicate window (2 minutes). Calls whose effect is
not such a publish (claim, complete, fail, reading DMs, DLQ retry/discard, the ``nats_*`` writes) re-run as such
and answer what they find (``conflict``, ``not_found``; other items for a claim, the first claim's items going
back to the queue when their lease ends; a DM read by the dead attempt is not read again).

If the calls bucket cannot be used (NATS permissions without it, a failure), the call runs without a record (still
with derived ids, so a resend's publish is still dropped within the duplicate window), a warning is logged and
calls skip the bucket for :data:`SKIP_STORE_S`: the store must not become a reason for calls to fail or wait.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Generic, Literal, Protocol, TypeVar

from nats_mcp.bus import specs
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import JetStreamError, KeyNotFound, NatsUnavailableError, WrongLastSequence, nats_edge
from nats_mcp.bus.jstypes import KeyValue
from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.layout import Layout
from nats_mcp.core import reqctx

log = logging.getLogger("nats_mcp.coord.replay")

WINDOW_S = 600.0
"""How long a record answers resends after its last write (the bucket's TTL)."""
LEASE_S = 30.0
"""A running record whose lease ran out this long after its last renewal belongs to a dead process."""
WAIT_S = 10.0
"""How long a resend waits for a running first attempt before answering "still running, retry"."""
MAX_KEPT_BYTES = 512 * 1024
"""Outcomes larger than this (or than NATS's max payload) are not kept: a resend learns the call ran, not its result."""
OWNER = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
"""This process, as a record names its owner."""
SKIP_STORE_S = 60.0
"""After the calls bucket failed (other than NATS being away), calls skip it this long: a user without permissions
on it waits for a request timeout, which must not be paid by every call."""
_MOVED = (10071, 10164)
"""JetStream's answers to a conditional write whose key moved on (nats-py does not translate them for delete)."""

Outcome = dict[str, Any]
T = TypeVar("T")


def call_token(principal: str, session: str, request_id: str | int) -> str:
    """The token of one request of one session of one principal (JSON keeps ``1`` and ``"1"`` apart)."""
    return hashlib.sha256(json.dumps([principal, session, request_id]).encode()).hexdigest()


def fingerprint(tool: str, arguments: Any) -> str:
    """What a resend must match: the tool and its arguments (a reused request id with other ones is another call)."""
    raw = json.dumps([tool, arguments], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class CallRecord:
    """Where one call stands; ``outcome`` is None while running and when it was too large to keep."""

    state: Literal["running", "done"]
    owner: str
    fingerprint: str
    started: float
    lease_until: float
    outcome: Outcome | None = None
    kept: bool = True

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> CallRecord | None:
        try:
            body = json.loads(raw or b"")
            return cls(**{k: body[k] for k in cls.__dataclass_fields__ if k in body})
        except (ValueError, TypeError):
            return None


class Codec(Protocol[T]):
    """How the API layer's results become outcomes and back, and the answers the replay itself gives."""

    def encode(self, result: T) -> Outcome | None:
        """The outcome to keep; None when the result says the call may simply be tried again (nothing to replay)."""

    def decode(self, outcome: Outcome) -> T: ...

    def busy(self, retry_after_s: float) -> T:
        """The first attempt is still running elsewhere."""

    def reused(self) -> T:
        """The request id was used for another call (other tool or arguments) in this session."""

    def unkept(self) -> T:
        """The call ran, but its outcome was not kept (too large) or cannot be read back."""


@dataclass
class _Held:
    """The record this process owns while its attempt runs, at its latest revision."""

    record: CallRecord
    revision: int


@dataclass(frozen=True)
class _Found(Generic[T]):
    answer: T


def _replayed(done: CallRecord, codec: Codec[T]) -> T:
    """The answer a "done" record gives; one that cannot be read back says the call ran (never runs it again)."""
    if done.kept and done.outcome is not None:
        try:
            return codec.decode(done.outcome)
        except Exception:
            log.warning("the stored outcome of a call could not be read back", exc_info=True)
    return codec.unkept()


class CallRecords:
    """The calls bucket of one namespace and the protocol around one attempt (see the module docstring)."""

    def __init__(
        self,
        conn: NatsConnection,
        layout: Layout,
        *,
        lease_s: float = LEASE_S,
        wait_s: float = WAIT_S,
        owner: str = OWNER,
    ) -> None:
        self.bucket = Bucket.declared(conn, specs.calls_bucket(layout, ttl_s=WINDOW_S))
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.owner = owner
        self._tasks: set[asyncio.Task[None]] = set()
        self._skip_until = 0.0
        self._attempts = itertools.count(1)

    async def run(self, token: str, fp: str, attempt: Callable[[], Awaitable[T]], codec: Codec[T]) -> T:
        """The outcome of the call ``token``: the stored one, or ``attempt``'s (run at most once while alive)."""
        key = Layout.call_key(token)
        try:
            if time.monotonic() < self._skip_until:
                raise _Skipped
            begun = await self._begin(key, fp, codec)
        except Exception as exc:  # the store is unusable: the call itself must still work (its publishes deduped)
            self._degraded(exc)
            with reqctx.effects(token):
                return await attempt()
        if isinstance(begun, _Found):
            return begun.answer
        return await self._attempt(key, token, begun, attempt, codec)

    # -- taking the record ---------------------------------------------------------------------------

    async def _begin(self, key: str, fp: str, codec: Codec[T]) -> _Held | _Found[T]:
        kv = await self.bucket.kv()
        give_up = time.monotonic() + self.wait_s
        delay = 0.02
        owner = f"{self.owner}#{next(self._attempts)}"  # this attempt: the process may run another of the same call
        while True:
            now = time.time()
            mine = CallRecord("running", owner, fp, now, now + self.lease_s)
            try:
                with nats_edge():
                    return _Held(mine, int(await kv.create(key, mine.encode())))
            except WrongLastSequence:
                pass  # someone has it: look
            try:
                with nats_edge():
                    entry = await kv.get(key)
            except KeyNotFound:  # settled by deletion meanwhile: try to create it again
                if time.monotonic() > give_up:
                    return _Found(codec.busy(0.0))
                continue
            found = CallRecord.decode(entry.value)
            revision = int(entry.revision or 0)
            if found is not None and found.fingerprint != fp:
                return _Found(codec.reused())
            if found is not None and found.state == "done":
                log.info("answered a resend of call %s from its record", key)
                return _Found(_replayed(found, codec))
            if found is not None and found.lease_until > now:  # alive elsewhere: wait for its outcome
                left = give_up - time.monotonic()
                if left <= 0:
                    return _Found(codec.busy(max(0.0, found.lease_until - now)))
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 0.25)
                continue
            # Unreadable, or its owner stopped renewing the lease (dead): take it over and run the call again.
            try:
                with nats_edge():
                    taken = _Held(mine, int(await kv.update(key, mine.encode(), last=revision)))
            except WrongLastSequence:
                continue
            log.warning("taking over call %s from %s (its lease ran out)", key, found.owner if found else "?")
            return taken

    # -- running and settling ------------------------------------------------------------------------

    async def _attempt(
        self, key: str, token: str, held: _Held, attempt: Callable[[], Awaitable[T]], codec: Codec[T]
    ) -> T:
        keeper = asyncio.create_task(self._keep(key, held), name="call-lease")
        try:
            with reqctx.effects(token):
                result = await attempt()
        except BaseException:
            keeper.cancel()
            self._background(self._settle(key, held, None, keeper))  # a cancelled task may not await
            raise
        keeper.cancel()
        await self._settle(key, held, codec.encode(result), keeper)
        return result

    async def _keep(self, key: str, held: _Held) -> None:
        """Renew the lease while the attempt runs (a resend elsewhere takes a lapsed lease for a dead owner)."""
        kv = await self.bucket.kv()
        while True:
            await asyncio.sleep(self.lease_s / 3)
            renewed = replace(held.record, lease_until=time.time() + self.lease_s)
            try:
                with nats_edge():
                    held.revision = int(await kv.update(key, renewed.encode(), last=held.revision))
                held.record = renewed
            except WrongLastSequence:
                log.warning("call %s was taken over while this process still ran it", key)
                return
            except Exception as exc:  # NATS away for a moment: the next renewal may make it
                log.warning("could not renew the lease of call %s: %s", key, exc)

    async def _settle(self, key: str, held: _Held, outcome: Outcome | None, keeper: asyncio.Task[None]) -> None:
        """Write "done" with ``outcome``, or delete the record (None: a resend runs the call again)."""
        await asyncio.gather(keeper, return_exceptions=True)  # its last renewal, if one was in flight, has landed
        try:
            kv = await self.bucket.kv()
            if outcome is None:
                await self._write(kv, key, held, None)
                return
            done = replace(held.record, state="done", outcome=outcome)
            raw = done.encode()
            if len(raw) > min(MAX_KEPT_BYTES, self.bucket.conn.client.max_payload - 1024):
                raw = replace(done, outcome=None, kept=False).encode()
            await self._write(kv, key, held, raw)
        except Exception as exc:  # the record stays "running" until its lease lapses; a resend then re-runs
            log.warning("could not record the outcome of call %s: %s", key, exc)

    async def _write(self, kv: KeyValue, key: str, held: _Held, raw: bytes | None) -> None:
        for _ in range(2):  # a renewal we did not see land moved the revision: re-read once, still ours?
            try:
                with nats_edge():
                    if raw is None:
                        await kv.delete(key, last=held.revision)
                    else:
                        await kv.update(key, raw, last=held.revision)
                return
            except JetStreamError as exc:
                if not isinstance(exc, WrongLastSequence) and exc.err_code not in _MOVED:
                    raise
                with nats_edge():
                    entry = await kv.get(key)
                current = CallRecord.decode(entry.value)
                if current is None or current.owner != held.record.owner or current.state != "running":
                    log.warning("call %s moved on under this process; its outcome is not recorded", key)
                    return
                held.revision = int(entry.revision or 0)

    def _background(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run(), name="call-settle")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _degraded(self, exc: Exception) -> None:
        if isinstance(exc, _Skipped | NatsUnavailableError):  # NATS away fails at once: no window to open
            return
        self._skip_until = time.monotonic() + SKIP_STORE_S
        log.warning(
            "tool calls run without resend deduplication for %.0f s: the calls bucket %s is unusable: %s",
            SKIP_STORE_S,
            self.bucket.name,
            exc,
        )


class _Skipped(Exception):
    """The calls bucket failed a moment ago: this call does not try it."""
