"""The audit storage boundary: where the audit chain is written (the deployment's JetStream stream, a JSONL file)
and read back (verify, tail, follow).

The stream and its writer (:class:`StreamSink`, re-exported here) are
:mod:`nats_mcp.security.audit.streamsink`'s part: the stream refuses message deletes and purges, each chain is stored
on a subject naming its writer, and every write expects the stream sequence of the chain's previous record.

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
from nats.js.api import StreamInfo
from nats.js.errors import NotFoundError

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import StoredMsg, api_prefix, get_batch
from nats_mcp.bus.errors import BusError
from nats_mcp.bus.layout import AUDIT_STREAM, AUDIT_SUBJECTS, audit_chain_filter, parse_audit_subject
from nats_mcp.security.audit.chain import Anchor, Verifier, VerifyResult
from nats_mcp.security.audit.record import AuditRecord

# re-exported: the sinks, with the stream's config, in one place
from nats_mcp.security.audit.streamsink import StreamSink as StreamSink
from nats_mcp.security.audit.streamsink import audit_stream_config as audit_stream_config

log = logging.getLogger("nats_mcp.security.audit.log")

READ_BATCH: Final = 500
READ_MAX_BYTES: Final = 1 << 20


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
