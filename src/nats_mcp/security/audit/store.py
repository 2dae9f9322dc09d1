"""The audit storage boundary: where the audit chain is written (the deployment's JetStream stream, a JSONL file)
and read back (verify, tail, follow).

The stream (``nmcp_audit``, file storage, subjects ``nmcp.audit.<writer>.<chain>``) refuses message deletes and
purges. The writer token is the NATS user's reply prefix (:func:`~nats_mcp.bus.layout.audit_writer`): the printed
permissions let a user publish only under its own token, so the subject a chain is stored on proves which NATS user
wrote it, and the stream verifier refuses a chain found under two writers.
Each record is published with ``Nats-Expected-Last-Subject-Sequence`` set to the stream sequence of the
previous record of its chain, so a chain cannot fork silently: if anything else was written on the chain's
subject, or its last record removed, the publish fails, the last stored message is read, and unless it is the
very record being retried (a publish whose answer was lost) the writer reports the divergence
(:class:`~nats_mcp.security.audit.chain.ChainDivergedError`) and the audit log continues in a new chain. So a writer
publishes one record per round trip, by design: pipelined publishes without that header could store record k+1
after record k was lost, a hole no retry could ever close.

The JSONL file is appended under an exclusive ``flock`` (several processes may share one file, each with its own
chain), one write per batch, then ``fsync``; a failed write is truncated back, so a retry never doubles a line.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import nats.errors
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import StoredMsg, api_prefix, get_batch
from nats_mcp.bus.errors import BusError, translate
from nats_mcp.bus.layout import (
    AUDIT_STREAM,
    AUDIT_SUBJECTS,
    audit_chain_filter,
    audit_subject,
    audit_writer,
    parse_audit_subject,
)
from nats_mcp.bus.setup import ensure_stream, stream_config
from nats_mcp.security.audit.chain import Anchor, ChainDivergedError, Verifier, VerifyResult
from nats_mcp.security.audit.record import AuditRecord

log = logging.getLogger("nats_mcp.security.audit.log")

EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE: Final = 10071
STREAM_NOT_FOUND: Final = 10059
API_TIMEOUT_S: Final = 5.0
READ_BATCH: Final = 500
READ_MAX_BYTES: Final = 1 << 20


def audit_stream_config(replicas: int | None = None) -> StreamConfig:
    """The deployment's audit stream: kept until an operator sets limits; no message can be deleted or purged."""
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
        duplicate_window=120.0,  # the server's default, spelled out: a differing value would be "updated" each start
        num_replicas=replicas,
    )


class StreamSink:
    """Writes records to the audit stream, one chain subject per chain, each publish expecting the previous one."""

    name = "stream"

    def __init__(self, conn: NatsConnection, *, replicas: int | None = None, timeout: float = API_TIMEOUT_S) -> None:
        self._conn = conn
        self._replicas = replicas
        self._timeout = timeout
        self._ensured = False
        self.writer = audit_writer(conn.settings.nats.inbox_prefix)
        """This process's writer token: its chains go to ``nmcp.audit.<writer>.<chain>``."""
        self._last: dict[str, int] = {}
        """chain -> stream sequence of its last record written by this sink."""
        self._ready = asyncio.Event()
        self._failing: str | None = None
        self._closed = False
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
        for record in batch:
            try:
                await self._publish(js, record, written)
            except ChainDivergedError:
                raise
            except Exception as exc:
                if isinstance(exc, NoStreamResponseError | nats.errors.NoRespondersError) or (
                    isinstance(exc, APIError) and exc.err_code == STREAM_NOT_FOUND
                ):
                    self._ensured = False  # the stream is gone: create it again on the next try
                self._failed(_why(exc, "publishing to the audit stream failed"))
                return written
            written += 1
        if self._failing:
            log.info("audit stream: writing again")
            self._failing = None
        return written

    async def _ensure(self, js: Any) -> None:
        """Create the stream, or bring it to its settings; a least-privilege user (agent, gateway) may only look it
        up: then a stream made by an admin is written as it is, and a differing setting is logged once."""
        try:
            await ensure_stream(js, audit_stream_config(self._replicas or self._conn.replicas))
        except Exception as exc:
            try:
                await js.stream_info(AUDIT_STREAM)
            except Exception:
                raise exc from None
            log.warning(
                "audit stream: cannot bring %s to its settings (%s); writing to it as it is",
                AUDIT_STREAM,
                _why(exc, "update refused"),
            )

    async def _publish(self, js: Any, record: AuditRecord, written: int) -> None:
        subject = audit_subject(record.chain, self.writer)
        expected = self._last.get(record.chain)
        if expected is None and record.seq > 1:
            expected, stored = await self._resume(js, record, written)
            if stored:
                self._last[record.chain] = expected
                return
        expected = expected or 0
        try:
            ack = await js.publish(
                subject,
                record.to_json(),
                timeout=self._timeout,
                stream=AUDIT_STREAM,
                headers={EXPECTED_LAST_SUBJECT_SEQ: str(expected)},
            )
        except APIError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            self._last[record.chain] = await self._already_stored(js, record, written)
            return
        self._last[record.chain] = int(ack.seq)

    async def _last_on(self, js: Any, record: AuditRecord) -> tuple[int, dict[str, Any] | None] | None:
        """(stream seq, parsed record) of the last message on the record's chain subject; None if there is none."""
        try:
            msg = await js.get_last_msg(AUDIT_STREAM, audit_subject(record.chain, self.writer))
        except NotFoundError:
            return None
        try:
            data = json.loads(msg.data or b"")
        except ValueError:
            data = None
        return int(msg.seq), data if isinstance(data, dict) else None

    async def _already_stored(self, js: Any, record: AuditRecord, written: int) -> int:
        """After "wrong last sequence": the stream seq of ``record`` if it is the chain's last message (an earlier
        attempt was stored, its answer lost); otherwise the chain diverged."""
        last = await self._last_on(js, record)
        if last is not None and last[1] is not None and last[1].get("hash") == record.hash:
            return last[0]
        found = "no record" if last is None else f"stream sequence {last[0]}"
        raise ChainDivergedError(written, f"expected this writer's record seq {record.seq - 1}, found {found}")

    async def _resume(self, js: Any, record: AuditRecord, written: int) -> tuple[int, bool]:
        """A chain this sink has not written yet, not at its start (the sink was replaced): the last message on
        the subject must be the record's predecessor (or the record itself). (its stream seq, record stored)."""
        last = await self._last_on(js, record)
        if last is not None and last[1] is not None and last[1].get("hash") in (record.prev, record.hash):
            return last[0], last[1].get("hash") == record.hash
        raise ChainDivergedError(written, f"the chain's last stored record is not seq {record.seq - 1}")


def _why(exc: BaseException, what: str) -> str:
    bus = exc if isinstance(exc, BusError) else translate(exc)
    if bus is not None:
        return f"{what}: {bus.message}"
    return f"{what}: {type(exc).__name__}: {exc}"


class FileSink:
    """Appends records to a JSONL file (mode 0600), one write per batch under an exclusive lock, and fsyncs at most
    every ``fsync_interval_s`` (and on close): an fsync per record cost a quarter of a cheap tool call. A crash of
    the machine, not of the process, can so lose the last second of the file; the stream is the replicated copy."""

    name = "file"

    def __init__(self, path: Path, *, fsync_interval_s: float = 1.0) -> None:
        self.path = Path(path).expanduser()
        self._fd: int | None = None
        self._failing = False
        self._fsync_interval_s = fsync_interval_s
        self._synced_at = 0.0

    async def write(self, batch: Sequence[AuditRecord]) -> int:
        data = b"".join(record.to_json() + b"\n" for record in batch)
        try:
            now = time.monotonic()
            if now - self._synced_at >= self._fsync_interval_s:
                self._synced_at = now
                await asyncio.to_thread(self._append, data, True)
            else:
                self._append(data, False)  # a small append to a local file: cheaper than a thread hop
        except OSError as exc:
            if not self._failing:
                log.warning("audit file %s: cannot write (%s); records stay queued", self.path, exc.strerror or exc)
            self._failing = True
            self._close_fd()
            return 0
        if self._failing:
            log.info("audit file %s: writing again", self.path)
            self._failing = False
        return len(batch)

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def _append(self, data: bytes, sync: bool) -> None:
        fd = self._open()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if sync:
                    os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)  # no half line left for the retry to follow
                raise
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    async def wait_ready(self, timeout: float) -> None:
        await asyncio.sleep(timeout)

    async def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(os.fsync, self._fd)
        self._close_fd()


# --------------------------------------------------------------------------------------------------
# Reading back


def read_file(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of every non-blank line of a JSONL audit file."""
    with Path(path).expanduser().open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield number, line


def verify_lines(
    lines: Iterable[tuple[int, bytes]], *, allow_expired_head: bool = False, anchors: Iterable[Anchor] = ()
) -> VerifyResult:
    """Verify the records of a JSONL file."""
    verifier = Verifier(allow_expired_head=allow_expired_head, anchors=anchors)
    for number, line in lines:
        if not verifier.add(line, f"line {number}"):
            break
    return verifier.result()


def verify_file(path: Path, *, allow_expired_head: bool = False, anchors: Iterable[Anchor] = ()) -> VerifyResult:
    return verify_lines(read_file(path), allow_expired_head=allow_expired_head, anchors=anchors)


async def stream_info(conn: NatsConnection) -> StreamInfo | None:
    """The audit stream's info, or None when there is no audit stream."""
    try:
        return await conn.jetstream.stream_info(AUDIT_STREAM)
    except NotFoundError:
        return None


async def read_range(
    nc: Client, first: int, last: int, *, subject: str | None = None, prefix: str = "$JS.API"
) -> AsyncIterator[StoredMsg]:
    """Stored messages of the audit stream with ``first <= seq <= last`` (on ``subject`` if given), in order."""
    seq = max(first, 1)
    while seq <= last:
        batch = await get_batch(
            nc, AUDIT_STREAM, seq, READ_BATCH, subject=subject, max_bytes=READ_MAX_BYTES, prefix=prefix
        )
        if not batch.messages:
            return
        for msg in batch.messages:
            if msg.seq > last:
                return
            yield msg
        if batch.at_end:
            return
        seq = batch.messages[-1].seq + 1


async def verify_stream(
    conn: NatsConnection, *, allow_expired_head: bool = False, anchors: Iterable[Anchor] = ()
) -> VerifyResult | None:
    """Verify every record in the audit stream up to its last sequence now; None when there is no audit stream.

    Beyond :func:`~nats_mcp.security.audit.chain.verify`: each record must be on a subject of its own chain, and every
    record of a chain under one writer (the first record's: each chain's writer is reported); a chain that a writer
    reported as diverged must end where that writer had left it.
    """
    info = await stream_info(conn)
    if info is None:
        return None
    state = info.state
    verifier = Verifier(allow_expired_head=allow_expired_head, anchors=anchors, check_divergence=True)
    writers: dict[str, str | None] = {}
    if state.messages:
        prefix = api_prefix(conn.settings.nats.jetstream_domain)
        async for msg in read_range(conn.client, state.first_seq, state.last_seq, prefix=prefix):
            where = f"stream sequence {msg.seq}"
            record = _chain_of(msg.data)
            if record is not None:  # the writer first: a forged record must be named as such, whatever else is wrong
                chain, seq = record
                parsed = parse_audit_subject(msg.subject)
                raw = msg.data.decode(errors="replace")
                if parsed is None or parsed[1] != chain:
                    verifier.fail(chain, seq, where, f"stored on subject {msg.subject}, not its chain's", raw)
                    break
                owner = writers.setdefault(chain, parsed[0])
                if owner != parsed[0]:
                    what = (
                        f"written by {_writer_name(parsed[0])}, but the chain was written by "
                        f"{_writer_name(owner)}: a record forged onto another writer's chain"
                    )
                    verifier.fail(chain, seq, where, what, raw)
                    break
            if not verifier.add(msg.data, where):
                break
            if record is not None:
                verifier.chains[record[0]].writer = writers[record[0]]
    return verifier.result()


def _writer_name(writer: str | None) -> str:
    return f"writer {writer}" if writer is not None else "an unknown writer (a subject without a writer token)"


def _chain_of(data: bytes) -> tuple[str, int] | None:
    try:
        parsed = json.loads(data)
        return str(parsed["chain"]), int(parsed["seq"])
    except (ValueError, KeyError, TypeError):
        return None


async def newest(conn: NatsConnection, n: int, *, chain: str | None = None) -> tuple[list[StoredMsg], int]:
    """The newest ``n`` records (of one chain, or all) and the stream's last sequence when read."""
    info = await stream_info(conn)
    if info is None:
        raise LookupError("there is no audit stream yet (nothing has been audited on this NATS)")
    first, last = info.state.first_seq, info.state.last_seq
    if n <= 0 or not info.state.messages:
        return [], last
    subject = audit_chain_filter(chain) if chain else None
    prefix = api_prefix(conn.settings.nats.jetstream_domain)
    window = max(n, 256)
    while True:
        start = max(first, last - window + 1)
        found = [m async for m in read_range(conn.client, start, last, subject=subject, prefix=prefix)]
        if len(found) >= n or start <= first:
            return found[-n:], last
        window *= 8


async def follow(conn: NatsConnection, after: int, *, chain: str | None = None) -> AsyncIterator[StoredMsg]:
    """Records stored after stream sequence ``after``, as they arrive (forever). Live publishes on the chain
    subjects only ring the bell; what is yielded is always read from the stream, in order, without gaps."""
    subject = audit_chain_filter(chain) if chain else AUDIT_SUBJECTS
    prefix = api_prefix(conn.settings.nats.jetstream_domain)
    bell = asyncio.Event()

    async def ring(_msg: Any) -> None:
        bell.set()

    sub = await conn.client.subscribe(subject, cb=ring)
    try:
        seq = after + 1
        while True:
            bell.clear()
            try:
                batch = await get_batch(
                    conn.client,
                    AUDIT_STREAM,
                    seq,
                    READ_BATCH,
                    subject=None if chain is None else subject,
                    max_bytes=READ_MAX_BYTES,
                    prefix=prefix,
                )
            except (BusError, nats.errors.Error) as exc:
                log.debug("audit follow: %s", exc)
                batch = None
            if batch and batch.messages:
                for msg in batch.messages:
                    yield msg
                seq = batch.messages[-1].seq + 1
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bell.wait(), 2.0)  # the bell, or a periodic look (a missed bell, a reconnect)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
