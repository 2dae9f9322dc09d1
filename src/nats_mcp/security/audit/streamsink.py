"""The audit stream-writer boundary: the deployment's JetStream audit stream and the sink that appends chains to it.

The stream (``nmcp_audit``, file storage, subjects ``nmcp.audit.<writer>.<chain>``) refuses message deletes and
purges. The writer token is the NATS user's reply prefix (:func:`~nats_mcp.bus.layout.audit_writer`): the printed
permissions let a user publish only under its own token, so the subject a chain is stored on proves which NATS user
wrote it, and the stream verifier refuses a chain found under two writers.

Every write expects, with ``Nats-Expected-Last-Subject-Sequence``, the stream sequence of the previous record of its
chain, so a chain cannot fork silently: if anything else was written on the chain's subject, or its last record
removed, the write fails, the last stored message is read, and unless it is a record being retried (a write whose
answer was lost) the writer reports the divergence (:class:`~nats_mcp.security.audit.chain.ChainDivergedError`) and
the audit log continues in a new chain.

A run of at least :data:`ATOMIC_MIN` records of one chain handed over at once (a backlog under load, after an
outage, or gathered by ``batch_wait_ms``) goes as one *atomic batch* (the stream allows atomic publishes,
nats-server 2.12+): the records are sent without waiting, the last one commits and is the only round trip, and the
server stores all of them, in order, or none. The expectation sits on the batch's first record, so order, the chain
and no-doubling hold as with one acknowledged publish per record — which is how shorter runs go, and every run
when the stream does not allow atomic batches (an older server, or a stream a least-privilege user cannot update).
Measured (bench/audit.py, nats-server 2.15, file storage): an acknowledged publish costs the server ~115 µs of CPU;
an atomic commit ~3 ms (it reaches the disk) plus ~15 µs per record, so batches pay from ~32 records and cost half
at 64. Pipelined publishes (no wait between acknowledgements; ~25 µs per record at a depth of 8) are not an option:
the expectation of record k+1 is the stream sequence of record k, known only from its acknowledgement, and without
it record k+1 could be stored after record k was lost (a leader change, a reconnection), a hole in the chain that
no retry could ever close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Final

import nats.errors
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import BusError, translate
from nats_mcp.bus.layout import AUDIT_STREAM, AUDIT_SUBJECTS, audit_subject, audit_writer
from nats_mcp.bus.publish import acked
from nats_mcp.bus.setup import ensure_stream, stream_config
from nats_mcp.security.audit.chain import ChainDivergedError
from nats_mcp.security.audit.record import AuditRecord

log = logging.getLogger("nats_mcp.security.audit.log")

EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_STREAM: Final = "Nats-Expected-Stream"
BATCH_ID: Final = "Nats-Batch-Id"
BATCH_SEQ: Final = "Nats-Batch-Sequence"
BATCH_COMMIT: Final = "Nats-Batch-Commit"
WRONG_LAST_SEQUENCE: Final = 10071
STREAM_NOT_FOUND: Final = 10059
ATOMIC_DISABLED: Final = 10174
"""The stream does not allow atomic batches (any more)."""
API_TIMEOUT_S: Final = 5.0
ATOMIC_MIN: Final = 64
"""The shortest run written as an atomic batch (below it, acknowledged publishes cost the server less CPU)."""
MAX_ATOMIC_BATCH: Final = 1000
"""The server's limit on the messages of one atomic batch (``max_batch_size`` of nats-server 2.12)."""
MAX_ATOMIC_BYTES: Final = 512 * 1024
"""Bytes per batch: a batch is staged in the server's memory until it commits."""


def audit_stream_config(replicas: int | None = None) -> StreamConfig:
    """The deployment's audit stream: kept until an operator sets limits; no message can be deleted or purged;
    atomic batches allowed (how writers append several records in one round trip)."""
    return stream_config(
        name=AUDIT_STREAM,
        description="hash-chained audit records of every nats-mcp server process, one subject per chain",
        subjects=[AUDIT_SUBJECTS],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        allow_atomic=True,
        duplicate_window=120.0,  # the server's default, spelled out: a differing value would be "updated" each start
        num_replicas=replicas,
    )


class StreamSink:
    """Writes records to the audit stream, one chain subject per chain, each write expecting the previous one
    (see the module docstring); ``atomic=False`` writes one acknowledged publish per record even where the stream
    allows atomic batches (the way every record was written before batches; benchmarks compare the two)."""

    name = "stream"

    def __init__(
        self,
        conn: NatsConnection,
        *,
        replicas: int | None = None,
        timeout: float = API_TIMEOUT_S,
        atomic: bool = True,
    ) -> None:
        self._conn = conn
        self._replicas = replicas
        self._timeout = timeout
        self._want_atomic = atomic
        self.atomic = False
        """Whether writes go as atomic batches (known once the stream was looked up)."""
        self._ensured = False
        self.writer = audit_writer(conn.settings.nats.inbox_prefix)
        """This process's writer token: its chains go to ``nmcp.audit.<writer>.<chain>``."""
        self._last: dict[str, int] = {}
        """chain -> stream sequence of its last record written by this sink."""
        self._subjects: dict[str, str] = {}
        """chain -> its subject (checked once, not per record)."""
        self._ready = asyncio.Event()
        self._failing: str | None = None
        self._closed = False
        self.round_trips = 0
        """Acknowledged writes made (one per batch, or per record without batches): for tests and benchmarks."""
        conn.add_listener(self._on_event)

    def _on_event(self, event: str, _data: dict[str, Any]) -> None:
        if event in ("connected", "reconnected") and not self._closed:
            self._ready.set()

    async def wait_ready(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)

    async def close(self) -> None:
        self._closed = True

    def _failed(self, why: str) -> None:
        if self._failing != why:
            log.warning("audit stream: %s; records stay queued and are written when it works again", why)
        self._failing = why

    async def write(self, batch: Sequence[AuditRecord]) -> int:
        self._ready.clear()  # a reconnection from now on wakes the retry
        try:
            js = self._conn.jetstream
            if not self._ensured:
                await self._ensure(js)
                self._ensured = True
        except Exception as exc:
            self._failed(_why(exc, "cannot reach the audit stream"))
            return 0
        written = 0
        for part in self._parts(batch):
            try:
                await self._append(js, part, written)
            except ChainDivergedError:
                raise
            except Exception as exc:
                if isinstance(exc, NoStreamResponseError | nats.errors.NoRespondersError) or (
                    isinstance(exc, APIError) and exc.err_code == STREAM_NOT_FOUND
                ):
                    self._ensured = False  # the stream is gone: create it again on the next try
                self._failed(_why(exc, "publishing to the audit stream failed"))
                return written
            written += len(part)
        if self._failing:
            log.info("audit stream: writing again")
            self._failing = None
        return written

    def _parts(self, batch: Sequence[AuditRecord]) -> Iterator[Sequence[AuditRecord]]:
        """The batch cut into what is written in one round trip: runs of one chain within the batch limits as atomic
        batches, single records where a run is shorter than :data:`ATOMIC_MIN` (or without atomic batches)."""
        if not self.atomic or len(batch) < ATOMIC_MIN:
            for record in batch:
                yield (record,)
            return
        start, size = 0, 0
        for i, record in enumerate(batch):
            length = len(record.to_json())
            if i > start and (
                record.chain != batch[start].chain or i - start >= MAX_ATOMIC_BATCH or size + length > MAX_ATOMIC_BYTES
            ):
                yield from self._run(batch[start:i])
                start, size = i, 0
            size += length
        if start < len(batch):
            yield from self._run(batch[start:])

    @staticmethod
    def _run(run: Sequence[AuditRecord]) -> Iterator[Sequence[AuditRecord]]:
        if len(run) >= ATOMIC_MIN:
            yield run
        else:
            yield from ((record,) for record in run)

    async def _ensure(self, js: Any) -> None:
        """Create the stream, or bring it to its settings; a least-privilege user (agent, gateway) may only look it
        up: then a stream made by an admin is written as it is, and a differing setting is logged once."""
        wanted = audit_stream_config(self._replicas or self._conn.replicas)
        try:
            info = await ensure_stream(js, wanted)  # a stream made before batches gains allow_atomic here
        except Exception as exc:
            try:
                info = await js.stream_info(AUDIT_STREAM)
            except Exception:
                raise exc from None
            log.warning(
                "audit stream: cannot bring %s to its settings (%s); writing to it as it is",
                AUDIT_STREAM,
                _why(exc, "update refused"),
            )
        self.atomic = self._want_atomic and bool(info.config.allow_atomic)
        if self._want_atomic and not self.atomic:
            log.warning("audit stream: %s does not allow atomic batches; one round trip per record", AUDIT_STREAM)

    async def _append(self, js: Any, part: Sequence[AuditRecord], written: int) -> None:
        """Store ``part`` (records of one chain, in order) after the chain's last stored record, or raise."""
        chain = part[0].chain
        expected = self._last.get(chain)
        done = 0
        if expected is None and part[0].seq > 1:
            # A chain this sink has not written yet, not at its start (the sink was replaced): the last message on
            # the subject must be the predecessor of the part (or one of its records: stored by the old sink).
            expected, done = await self._locate(js, part, written, resuming=True)
            self._last[chain] = expected
        expected = expected or 0
        step = len(part)
        while done < len(part):
            try:
                expected = await self._send(js, part[done : done + step], expected)
                done += len(part[done : done + step])
            except APIError as exc:
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    if step == 1 or len(part) - done == 1:
                        raise
                    # The batch was refused whole (the stream's in-flight batch limit, atomic batches switched
                    # off): nothing of it is stored, so the same records go one publish each.
                    log.info("audit stream: an atomic batch was refused (%s); one publish per record", exc)
                    step = 1
                    if exc.err_code == ATOMIC_DISABLED:
                        self.atomic = False  # until the stream is looked up again
                    continue
                # An earlier attempt was stored and its answer lost — or the chain diverged.
                expected, stored = await self._locate(js, part[done:], written + done, resuming=False)
                done += stored
            self._last[chain] = expected

    async def _send(self, js: Any, part: Sequence[AuditRecord], expected: int) -> int:
        """One round trip: ``part`` as an atomic batch (one record: a plain publish) expecting ``expected`` as the
        subject's last sequence; the stream sequence of its last record."""
        chain = part[0].chain
        subject = self._subjects.get(chain)
        if subject is None:
            subject = self._subjects[chain] = audit_subject(chain, self.writer)
        self.round_trips += 1
        nc = self._conn.client
        if len(part) == 1:
            # What js.publish sends (the expectation, the stream), asked on the connection directly (bus/publish.py
            # acked): its answer is read for the sequence alone, without building nats-py's PubAck per record.
            headers = {EXPECTED_LAST_SUBJECT_SEQ: str(expected), EXPECTED_STREAM: AUDIT_STREAM}
            return await self._request(nc, subject, part[0].to_json(), headers, 1)
        batch_id = uuid.uuid4().hex
        last = len(part)
        for i, record in enumerate(part[:-1], start=1):
            headers = {BATCH_ID: batch_id, BATCH_SEQ: str(i)}
            if i == 1:
                headers[EXPECTED_LAST_SUBJECT_SEQ] = str(expected)
            await nc.publish(subject, record.to_json(), headers=headers)
        headers = {BATCH_ID: batch_id, BATCH_SEQ: str(last), BATCH_COMMIT: "1", EXPECTED_STREAM: AUDIT_STREAM}
        return await self._request(nc, subject, part[-1].to_json(), headers, last)

    async def _request(self, nc: Any, subject: str, payload: bytes, headers: dict[str, str], count: int) -> int:
        """Send the write that is answered (a publish, a batch's commit); the stream sequence of its last record.
        Refusals raise as js.publish raises them (an APIError by its code; no stream: NoStreamResponseError)."""
        try:
            msg = await acked(nc, subject, payload, headers, self._timeout)
        except nats.errors.NoRespondersError:
            raise NoStreamResponseError from None
        answer = json.loads(msg.data)
        if "error" in answer:
            raise APIError.from_error(answer["error"])
        if count > 1 and int(answer.get("count", count)) != count:
            raise BusError("the audit stream stored part of a batch")  # atomic: not expected to happen, never hidden
        return int(answer["seq"])

    async def _last_on(self, js: Any, chain: str) -> tuple[int, dict[str, Any] | None] | None:
        """(stream seq, parsed record) of the last message on the chain's subject; None if there is none."""
        try:
            msg = await js.get_last_msg(AUDIT_STREAM, audit_subject(chain, self.writer))
        except NotFoundError:
            return None
        try:
            data = json.loads(msg.data or b"")
        except ValueError:
            data = None
        return int(msg.seq), data if isinstance(data, dict) else None

    async def _locate(self, js: Any, part: Sequence[AuditRecord], written: int, *, resuming: bool) -> tuple[int, int]:
        """Where the chain's stored copy ends relative to ``part``: (stream seq of its last message, how many records
        of ``part`` are already stored). The last message must be one of the part's records — or, ``resuming``
        a chain another sink wrote, the part's predecessor; anything else is a divergence."""
        last = await self._last_on(js, part[0].chain)
        if last is not None and last[1] is not None:
            stored = last[1].get("hash")
            if resuming and stored == part[0].prev:
                return last[0], 0
            for i, record in enumerate(part):
                if record.hash == stored:
                    return last[0], i + 1
        found = "no record" if last is None else f"stream sequence {last[0]}"
        if resuming:
            raise ChainDivergedError(written, f"the chain's last stored record is not seq {part[0].seq - 1} ({found})")
        raise ChainDivergedError(written, f"expected this writer's record seq {part[0].seq - 1}, found {found}")


def _why(exc: BaseException, what: str) -> str:
    bus = exc if isinstance(exc, BusError) else translate(exc)
    if bus is not None:
        return f"{what}: {bus.message}"
    return f"{what}: {type(exc).__name__}: {exc}"
