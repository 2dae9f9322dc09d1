"""The audit-writer boundary: :class:`AuditLog`, to which the guard hands every tool call and security event.

Records and their sealing live in :mod:`nats_mcp.security.audit.record`, their verification in
:mod:`nats_mcp.security.audit.chain`, the sinks (the JetStream stream, a JSONL file) in
:mod:`nats_mcp.security.audit.store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from nats_mcp.core.aiotasks import NextStep, stop_task
from nats_mcp.security.audit.chain import Anchor, ChainDivergedError
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.audit.record import (
    _HEX64,
    _KIND,
    _NAMESPACE,
    _TOOL,
    AuditPrincipal,
    AuditRecord,
    Transport,
    _Chain,
    _now,
    _text,
    _token,
    digest_arguments,
)
from nats_mcp.security.principal import Principal

if TYPE_CHECKING:
    from nats_mcp.bus.connection import NatsConnection
    from nats_mcp.config.security import AuditSettings

log = logging.getLogger("nats_mcp.security.audit.log")

DEFAULT_MAX_PENDING: Final = 10_000
DEFAULT_BATCH: Final = 256
GATHERED: Final = 64
"""Records enough for a writer to stop waiting (``batch_wait_s``): the stream sink writes them as one atomic batch."""
Durability = Literal["async", "sync"]


class AuditSink(Protocol):
    """Where sealed records are written, in order, by one background task per sink."""

    name: str

    async def write(self, batch: Sequence[AuditRecord]) -> int:
        """Store the records in order; return how many (from the start of the batch) are now stored. Fewer than
        all means the next one failed (the sink logs why); it is offered again later. Raise
        :class:`ChainDivergedError` when the store's chain is not this writer's."""
        ...

    async def wait_ready(self, timeout: float) -> None:
        """Return when a retry is worth it (e.g. NATS is back), at the latest after ``timeout`` seconds."""
        ...

    async def close(self) -> None: ...


@dataclass(eq=False)
class _SinkState:
    sink: AuditSink
    offset: int
    """Absolute index of the next record this sink writes."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    hurry: asyncio.Event = field(default_factory=asyncio.Event)
    """Cuts a ``batch_wait`` short (a flush, a full batch)."""
    task: asyncio.Task[None] | None = None
    written: int = 0
    failing: bool = False


class AuditLog:
    """The audit writer: :meth:`record` seals a record at once (hashing only, no I/O, never blocks) and queues it;
    one background task per sink writes the queue in order.

    The queue is bounded (``max_pending`` records not yet written by every sink) and never applies backpressure:
    a full queue means a sink has been failing for a while (NATS down), and making tool calls wait on it would
    let an outage — or a flood of failed logins — stall every caller. Instead, beyond the bound new records are
    dropped *before* they are sealed (so the chain stays whole), counted, logged, and as soon as there is room a
    ``records_dropped`` record carrying the count is sealed into the chain: the loss itself is audited. Records
    within the bound wait, in order, for their sink to come back (reconnection wakes the stream sink at once).
    :meth:`flush` waits for the queue to drain; :meth:`close` seals a ``chain_end`` record, drains (up to its
    timeout — what is still queued then is lost, and logged) and logs the chain's head as an anchor.

    ``durability`` ``sync``: :meth:`settle` (which the guard awaits before answering a call) waits until every
    record sealed so far is written, at most ``sync_timeout_s``; ``async``: it returns at once. ``batch_wait_s``
    (async only) lets a writer wait that long for more records before it writes (fewer, larger batches).
    """

    def __init__(
        self,
        sinks: Sequence[AuditSink] = (),
        *,
        transport: Transport = "stdio",
        max_pending: int = DEFAULT_MAX_PENDING,
        batch_size: int = DEFAULT_BATCH,
        chain: str | None = None,
        enabled: bool = True,
        durability: Durability = "async",
        sync_timeout_s: float = 5.0,
        batch_wait_s: float = 0.0,
    ) -> None:
        if max_pending < 2 or batch_size < 1:
            raise ValueError("max_pending must be at least 2 and batch_size at least 1")
        if durability not in ("async", "sync") or sync_timeout_s <= 0 or batch_wait_s < 0:
            raise ValueError("durability is async or sync, sync_timeout_s positive, batch_wait_s not negative")
        self.durability: Durability = durability
        self.sync_timeout_s = sync_timeout_s
        self.batch_wait_s = batch_wait_s if durability == "async" else 0.0
        self.enabled = enabled and bool(sinks)
        self.transport: str = transport
        self.max_pending = max_pending
        self.batch_size = batch_size
        self._chain = _Chain(chain)
        self._pending: deque[AuditRecord] = deque()
        self._base = 0  # absolute index of _pending[0]
        self._sinks = [_SinkState(sink, 0) for sink in sinks]
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._started = False
        self._closing = False
        self.recorded = 0
        self.dropped_total = 0
        self._dropped = 0  # since the last records_dropped record
        self._last_principal: tuple[Principal, AuditPrincipal] | None = None
        self._unsealed: NextStep[AuditEvent] = NextStep(self._append)
        """Events :meth:`record` left for the loop's next step (``async``)."""

    @classmethod
    def from_settings(
        cls, settings: AuditSettings, conn: NatsConnection | None, *, transport: Transport = "stdio", **options: Any
    ) -> AuditLog:
        """The audit log the settings ask for: the stream sink (needs ``conn``) and/or the JSONL file sink.
        With ``enabled`` off, or no sink, :meth:`record` does nothing."""
        from nats_mcp.security.audit.store import FileSink, StreamSink

        sinks: list[AuditSink] = []
        if settings.enabled and settings.stream and conn is not None:
            sinks.append(StreamSink(conn))
        if settings.enabled and settings.file is not None:
            sinks.append(FileSink(settings.file))
        options.setdefault("durability", settings.durability)
        options.setdefault("sync_timeout_s", settings.sync_timeout_s)
        options.setdefault("batch_wait_s", settings.batch_wait_ms / 1000)
        return cls(sinks, transport=transport, enabled=settings.enabled, **options)

    # -- recording (synchronous, cheap) ------------------------------------------------------------

    @property
    def chain(self) -> str:
        """The id of the chain records are being sealed into now."""
        return self._chain.id

    @property
    def head(self) -> Anchor:
        """(chain, seq, hash) of the last sealed record: an anchor."""
        self.seal_waiting()
        return self._chain.id, self._chain.seq, self._chain.head

    def record(self, event: AuditEvent) -> None:
        """Audit one tool call or security event (see :meth:`append`, which also returns the sealed record).

        ``async`` durability, inside the event loop: the record is sealed in the loop's next step, not now, so the
        answer that follows (a tool call's) goes out first; the order of records is the order of ``record`` calls,
        and everything that reads or extends the chain (:meth:`append`, :attr:`head`, :meth:`flush`, :meth:`close`,
        :meth:`stats`) seals what waits first. ``sync`` (the answer waits for the record), or outside a loop: now.
        """
        if not _KIND.fullmatch(event.kind):
            raise ValueError(f"invalid audit kind {event.kind!r}")
        if self.durability == "async" and self.enabled and not self._closing and self._unsealed.add(event):
            return
        self.append(event)

    def seal_waiting(self) -> None:
        """Seal the records :meth:`record` left for the loop's next step, in order."""
        self._unsealed.flush()

    def append(self, event: AuditEvent) -> AuditRecord | None:
        """Seal and queue one record now (after those :meth:`record` left waiting); returns it, or None when auditing
        is off or the record was dropped. Call it from the event loop's thread (it wakes the writers).

        ``arguments`` are digested here and never kept (or pass ``args_digest`` from :func:`digest_arguments`).
        ``peer`` defaults to the principal's; ``transport`` to the log's. Never raises for data (bad kinds do).
        """
        if not _KIND.fullmatch(event.kind):
            raise ValueError(f"invalid audit kind {event.kind!r}")
        self.seal_waiting()
        return self._append(event)

    def _append(self, event: AuditEvent) -> AuditRecord | None:
        kind, principal, peer, args_digest = event.kind, event.principal, event.peer, event.args_digest
        if not self.enabled:
            return None
        if self._closing:
            log.warning("audit record %s after the audit log was closed: not recorded", kind)
            return None
        room = self.max_pending - len(self._pending)
        if room < (2 if self._dropped else 1):
            self._drop()
            return None
        if self._dropped:
            self._seal_dropped()
        if event.arguments is not None and args_digest is None:
            args_digest = digest_arguments(event.arguments)
        fields = {
            "time": _now(),
            "kind": kind,
            "principal": self._principal(principal),
            "transport": _text(event.transport or self.transport, 16),
            "peer": _text(peer if peer is not None else (principal.peer if principal else None), 64),
            "tool": _token(event.tool, _TOOL),
            "namespace": _token(event.namespace, _NAMESPACE),
            "outcome": _text(event.outcome, 64) or "",
            "latency_ms": _latency(event.latency_ms),
            "args_digest": args_digest if args_digest is None or _HEX64.fullmatch(args_digest) else None,
            "reason": _text(event.reason, 200),
            "count": None,
            "ref": None,
        }
        return self._queue(self._chain.seal(fields))

    def _principal(self, principal: Principal | None) -> AuditPrincipal | None:
        if principal is None:
            return None
        last = self._last_principal
        if last is not None and last[0] is principal:
            return last[1]  # a stdio process, or one session: the same principal on every call
        who = AuditPrincipal.of(principal)
        self._last_principal = (principal, who)
        return who

    def _own(
        self, kind: str, *, outcome: str, reason: str | None = None, count: int | None = None, ref: str | None = None
    ) -> AuditRecord:
        fields = {
            "time": _now(),
            "kind": kind,
            "principal": None,
            "transport": self.transport,
            "peer": None,
            "tool": None,
            "namespace": None,
            "outcome": outcome,
            "latency_ms": None,
            "args_digest": None,
            "reason": reason,
            "count": count,
            "ref": ref,
        }
        return self._chain.seal(fields)

    def _drop(self) -> None:
        if not self._dropped:
            log.error(
                "audit queue full (%d records not yet written: is NATS down?); dropping records until it drains "
                "(the count will be audited)",
                len(self._pending),
            )
        self._dropped += 1
        self.dropped_total += 1

    def _seal_dropped(self) -> None:
        count, self._dropped = self._dropped, 0
        log.error("audit: %d records were dropped while the queue was full", count)
        self._queue(self._own("records_dropped", outcome="dropped", reason="queue_full", count=count))

    def _queue(self, record: AuditRecord) -> AuditRecord:
        self._pending.append(record)
        self.recorded += 1
        if not self._started:
            self._start_soon()
        full = self.batch_wait_s and len(self._pending) >= min(self.batch_size, GATHERED)
        for st in self._sinks:
            st.wake.set()
            if full:
                st.hurry.set()
        return record

    # -- background writing ----------------------------------------------------------------------

    def _start_soon(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: start() or the first record inside one starts the writers
        self.start()

    def start(self) -> None:
        """Start the sink writers (also done by the first record made inside the event loop)."""
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        for st in self._sinks:
            st.task = loop.create_task(self._drain(st), name=f"audit-{st.sink.name}")

    async def _drain(self, st: _SinkState) -> None:
        attempt = 0
        while True:
            start = st.offset - self._base
            if start >= len(self._pending):
                if self._closing:
                    return
                st.wake.clear()
                await st.wake.wait()
                continue
            if self.batch_wait_s and not st.failing and not self._closing:
                await self._gather(st, start)
                start = st.offset - self._base
            batch = list(itertools.islice(self._pending, start, start + self.batch_size))
            try:
                written = await st.sink.write(batch)
            except ChainDivergedError as exc:
                self._advance(st, exc.written)
                self._rechain(st.offset, exc.detail)
                continue
            except Exception:
                log.exception("audit sink %s failed", st.sink.name)
                written = 0
            self._advance(st, written)
            if written >= len(batch):
                if st.failing:
                    log.warning("audit sink %s is writing again", st.sink.name)
                st.failing, attempt = False, 0
                continue
            st.failing = True
            attempt += 1
            await st.sink.wait_ready(min(0.05 * 2**attempt, 5.0))

    async def _gather(self, st: _SinkState, start: int) -> None:
        """Wait up to ``batch_wait_s`` for a fuller batch (a flush or enough records cut it short)."""
        if len(self._pending) - start >= min(self.batch_size, GATHERED):
            return
        st.hurry.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(st.hurry.wait(), self.batch_wait_s)

    def _advance(self, st: _SinkState, written: int) -> None:
        if written <= 0:
            return
        st.offset += written
        st.written += written
        low = min(s.offset for s in self._sinks)
        while self._base < low:
            self._pending.popleft()
            self._base += 1
        if self._waiters:
            still = []
            for target, fut in self._waiters:
                if low >= target:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((target, fut))
            self._waiters = still

    def _rechain(self, index: int, detail: str) -> None:
        """The stream's copy of the chain diverged at absolute ``index``: continue in a new chain, whose first
        record names the old chain and its last stored seq; every record from ``index`` on is sealed again."""
        start = index - self._base
        tail = list(itertools.islice(self._pending, start, None))
        old = tail[0].chain if tail else self._chain.id
        good = tail[0].seq - 1 if tail else self._chain.seq
        for _ in tail:
            self._pending.pop()
        self._chain = _Chain()
        log.error(
            "audit chain %s diverged in the stream after seq %d (%s); continuing in chain %s",
            old,
            good,
            detail,
            self._chain.id,
        )
        marker = self._own(
            "chain_conflict", outcome="rechained", reason="stream_diverged", count=len(tail), ref=f"{old}:{good}"
        )
        self._pending.append(marker)
        self._pending.extend(self._chain.reseal(r) for r in tail)
        self.recorded += 1
        for st in self._sinks:
            st.offset = min(st.offset, index)
            st.wake.set()

    # -- draining, closing -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records not yet written by every sink."""
        self.seal_waiting()
        return len(self._pending)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record sealed so far is written by every sink; False if ``timeout`` passed first."""
        self.seal_waiting()
        target = self._base + len(self._pending)
        if not self._sinks or min(s.offset for s in self._sinks) >= target:
            return True
        self.start()
        for st in self._sinks:
            st.hurry.set()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return False
        return True

    async def settle(self) -> bool:
        """``sync``: wait until every record sealed so far is written by every sink (False after ``sync_timeout_s``,
        logged); ``async``, or auditing off: True at once."""
        if self.durability != "sync" or not self.enabled:
            return True
        if await self.flush(self.sync_timeout_s):
            return True
        log.error("audit: a record was not stored within %gs (durability sync)", self.sync_timeout_s)
        return False

    async def close(self, timeout: float = 10.0) -> None:
        """Seal ``chain_end``, drain for up to ``timeout`` seconds, stop the writers, close the sinks."""
        if self._closing:
            return
        self.seal_waiting()
        if self.enabled and self._chain.seq > 0:
            if self._dropped:
                self._seal_dropped()
            self._queue(self._own("chain_end", outcome="ok", reason="shutdown"))
        self._closing = True
        if not await self.flush(timeout):
            target = self._base + len(self._pending)
            behind = ", ".join(st.sink.name for st in self._sinks if st.offset < target)
            log.error(
                "audit: %d records could not be written before shutdown and are lost (sink %s failing)",
                len(self._pending),
                behind,
            )
        for st in self._sinks:
            await stop_task(st.task)
            try:
                await st.sink.close()
            except Exception:
                log.exception("closing audit sink %s failed", st.sink.name)
        if self.enabled and self._chain.seq > 0:
            chain, seq, digest = self.head
            log.info("audit chain %s closed at seq %d; anchor %s:%d:%s", chain, seq, chain, seq, digest)

    def stats(self) -> dict[str, Any]:
        """A snapshot for health checks and metrics."""
        self.seal_waiting()
        return {
            "enabled": self.enabled,
            "chain": self._chain.id,
            "seq": self._chain.seq,
            "recorded": self.recorded,
            "pending": len(self._pending),
            "dropped": self.dropped_total,
            "sinks": {st.sink.name: {"written": st.written, "failing": st.failing} for st in self._sinks},
        }


def _latency(ms: float | None) -> float | None:
    return round(ms, 3) if ms is not None and math.isfinite(ms) else None
