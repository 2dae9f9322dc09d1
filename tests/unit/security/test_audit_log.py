"""Unit tests of the audit writer: ordered background writing, a sink that fails and comes back, the bound and the
audited drop count, a diverged chain continued in a new one, closing, and the JSONL file sink."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from nats_mcp.config.security import AuditSettings
from nats_mcp.security.audit.chain import ChainDivergedError, verify
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.audit.log import AuditLog
from nats_mcp.security.audit.record import AuditRecord, digest_arguments
from nats_mcp.security.audit.store import FileSink, verify_file
from nats_mcp.security.principal import Principal
from tests.support.natsserver import wait_for

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.dG9wLXNlY3JldC1zaWduYXR1cmU"
BOB = Principal(subject="bob", issuer="local", method="local")


class MemorySink:
    """Keeps what it is given; ``up`` cleared makes it fail (write nothing) until set again."""

    name = "memory"

    def __init__(self, *, per_write: int | None = None) -> None:
        self.records: list[AuditRecord] = []
        self.up = asyncio.Event()
        self.up.set()
        self.per_write = per_write
        self.attempts = 0
        self.diverge_at: int | None = None
        self.closed = False

    async def write(self, batch: Sequence[AuditRecord]) -> int:
        self.attempts += 1
        if not self.up.is_set():
            return 0
        take = list(batch)[: self.per_write] if self.per_write else list(batch)
        for done, record in enumerate(take):
            if self.diverge_at is not None and len(self.records) == self.diverge_at:
                self.diverge_at = None
                raise ChainDivergedError(done, "someone else wrote to the chain")
            self.records.append(record)
        return len(take)

    async def wait_ready(self, timeout: float) -> None:
        await self.up.wait()  # no timer: the test says when the sink is back

    async def close(self) -> None:
        self.closed = True


def call(log: AuditLog, i: int) -> None:
    log.record(
        AuditEvent(
            "tool_call", principal=BOB, tool="echo", namespace="ns", outcome="ok", latency_ms=0.5, arguments={"i": i}
        )
    )


async def test_records_are_written_in_order_and_close_ends_the_chain() -> None:
    sink = MemorySink()
    log = AuditLog([sink], batch_size=7)
    for i in range(50):
        call(log, i)
    assert await log.flush(10)
    assert [r.seq for r in sink.records] == list(range(1, 51))
    assert log.pending == 0
    await log.close()
    assert sink.closed and sink.records[-1].kind == "chain_end"
    result = verify(sink.records)
    assert result.ok and result.records == 51 and result.open_chains == []
    assert log.stats()["sinks"]["memory"]["written"] == 51


async def test_record_returns_at_once_while_the_sink_is_down_and_nothing_is_lost() -> None:
    sink = MemorySink()
    sink.up.clear()
    log = AuditLog([sink])
    for i in range(20):
        call(log, i)
    await wait_for(lambda: sink.attempts > 0, 5, message="the writer tried")
    assert not await log.flush(0.05)
    assert log.pending == 20 and sink.records == []
    sink.up.set()
    assert await log.flush(10)
    assert [r.seq for r in sink.records] == list(range(1, 21))
    await log.close()


async def test_partial_writes_resume_where_they_stopped() -> None:
    sink = MemorySink(per_write=3)
    log = AuditLog([sink])
    for i in range(10):
        call(log, i)
    sink.up.set()
    assert await log.flush(10)
    assert [r.seq for r in sink.records] == list(range(1, 11))
    await log.close()


async def test_beyond_the_bound_records_are_dropped_counted_and_the_loss_is_audited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = MemorySink()
    sink.up.clear()
    log = AuditLog([sink], max_pending=5)
    with caplog.at_level(logging.ERROR, "nats_mcp.security.audit.log"):
        for i in range(12):
            call(log, i)
    assert log.pending == 5 and log.dropped_total == 7
    assert "audit queue full" in caplog.text
    sink.up.set()
    assert await log.flush(10)
    call(log, 99)  # room again: the drop is sealed into the chain first
    assert await log.flush(10)
    kinds = [(r.kind, r.count) for r in sink.records]
    assert kinds[:5] == [("tool_call", None)] * 5
    assert kinds[5] == ("records_dropped", 7)
    assert kinds[6] == ("tool_call", None)
    assert verify(sink.records).ok  # a dropped record was never sealed: the chain has no hole
    await log.close()


async def test_a_diverged_chain_continues_in_a_new_chain_that_says_so() -> None:
    sink = MemorySink()
    sink.diverge_at = 3
    log = AuditLog([sink])
    first = log.chain
    for i in range(6):
        call(log, i)
    assert await log.flush(10)
    assert log.chain != first
    old = [r for r in sink.records if r.chain == first]
    new = [r for r in sink.records if r.chain == log.chain]
    assert [r.seq for r in old] == [1, 2, 3]
    assert new[0].kind == "chain_conflict" and new[0].ref == f"{first}:3" and new[0].count == 3
    assert [r.seq for r in new] == [1, 2, 3, 4]
    assert [r.args_digest for r in new[1:]] == [digest_arguments({"i": i}) for i in (3, 4, 5)]  # same events
    assert verify(sink.records).ok
    await log.close()


async def test_close_gives_up_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    sink.up.clear()
    log = AuditLog([sink])
    call(log, 1)
    with caplog.at_level(logging.ERROR, "nats_mcp.security.audit.log"):
        await log.close(timeout=0.05)
    assert "could not be written before shutdown" in caplog.text
    assert sink.closed
    assert log.append(AuditEvent("tool_call")) is None  # closed: nothing more is recorded


async def test_one_failing_sink_does_not_hold_the_other_back() -> None:
    down, up = MemorySink(), MemorySink()
    down.up.clear()
    log = AuditLog([down, up])
    for i in range(5):
        call(log, i)
    await wait_for(lambda: len(up.records) == 5, 5, message="the working sink wrote everything")
    assert down.records == [] and log.pending == 5  # kept until every sink has it
    down.up.set()
    assert await log.flush(10)
    assert [r.hash for r in down.records] == [r.hash for r in up.records]
    await log.close()


# -- the JSONL file ----------------------------------------------------------------------------------


async def test_file_sink_appends_verifiable_lines_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    log = AuditLog([FileSink(path)])
    for i in range(10):
        log.record(AuditEvent("tool_call", principal=BOB, tool="send", arguments={"i": i, "token": TOKEN}))
    log.record(AuditEvent("auth_failure", outcome="unauthenticated", peer="192.0.2.7", reason="bad_signature"))
    await log.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    raw = path.read_bytes()
    assert TOKEN not in raw.decode() and b"top-secret" not in raw
    lines = raw.splitlines()
    assert len(lines) == 12 and json.loads(lines[-1])["kind"] == "chain_end"
    result = verify_file(path)
    assert result.ok and result.summary == "12 records in 1 chain verified"


async def test_two_writers_share_one_file_each_in_its_own_chain(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    a, b = AuditLog([FileSink(path)]), AuditLog([FileSink(path)])
    for i in range(20):
        call(a, i)
        call(b, i)
    await asyncio.gather(a.close(), b.close())
    result = verify_file(path)
    assert result.ok and result.summary == "42 records in 2 chains verified"


@pytest.mark.parametrize("tamper", ["alter", "remove", "reorder"])
async def test_a_tampered_file_fails_and_names_the_line(tmp_path: Path, tamper: str) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog([FileSink(path)])
    for i in range(6):
        call(log, i)
    await log.close()
    lines = path.read_bytes().splitlines()
    if tamper == "alter":
        lines[2] = lines[2].replace(b'"outcome":"ok"', b'"outcome":"no"')
    elif tamper == "remove":
        del lines[2]
    else:
        lines[2], lines[3] = lines[3], lines[2]
    path.write_bytes(b"\n".join(lines) + b"\n")
    problem = verify_file(path).problem
    assert problem is not None and problem.where == "line 3"


async def test_file_sink_keeps_records_queued_while_the_file_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    sink = FileSink(blocker / "audit.jsonl")
    log = AuditLog([sink])
    for i in range(3):
        call(log, i)
    assert not await log.flush(0.3)
    assert log.pending == 3
    blocker.unlink()
    assert await log.flush(10)  # the sink retries with backoff (at most 5 s apart)
    await log.close()
    assert verify_file(blocker / "audit.jsonl").records == 4


def test_from_settings_builds_the_sinks_the_settings_ask_for(tmp_path: Path) -> None:
    assert not AuditLog.from_settings(AuditSettings(enabled=False, file=tmp_path / "a.jsonl"), None).enabled
    assert not AuditLog.from_settings(AuditSettings(stream=True), None).enabled  # no connection, no file: no sink
    log = AuditLog.from_settings(AuditSettings(stream=False, file=tmp_path / "a.jsonl"), None, transport="http")
    assert log.enabled and log.transport == "http"
    assert list(log.stats()["sinks"]) == ["file"]


async def test_durability_sync_settles_once_written_async_never_waits_and_bad_values_are_refused() -> None:
    sink = MemorySink()
    sink.up.clear()  # the store is away
    eager = AuditLog([sink], durability="async")
    call(eager, 0)
    assert await eager.settle() and sink.records == []  # answered at once: the record waits in the queue
    durable = AuditLog([MemorySink()], durability="sync")
    call(durable, 0)
    assert await durable.settle()  # written
    stuck = AuditLog([sink], durability="sync", sync_timeout_s=0.05)
    call(stuck, 0)
    assert not await stuck.settle()  # never claims a record stored that is not
    sink.up.set()
    assert await stuck.settle() and await eager.flush(5)
    for log in (eager, durable, stuck):
        await log.close()
    for bad in ({"durability": "later"}, {"sync_timeout_s": 0}, {"batch_wait_s": -1}):
        with pytest.raises(ValueError, match="durability"):
            AuditLog([MemorySink()], **bad)  # type: ignore[arg-type]
    settings = AuditSettings(durability="sync", sync_timeout_s=2, batch_wait_ms=50)
    from_settings = AuditLog.from_settings(settings, None)  # no stream without a connection: no sink, no waiting
    assert from_settings.durability == "sync" and from_settings.sync_timeout_s == 2 and not from_settings.enabled


async def test_batch_wait_gathers_records_and_a_flush_or_a_full_batch_cuts_it_short() -> None:
    sink = MemorySink()
    writes: list[int] = []
    plain_write = sink.write

    async def counted(batch: Sequence[AuditRecord]) -> int:
        writes.append(len(batch))
        return await plain_write(batch)

    sink.write = counted  # type: ignore[method-assign]
    log = AuditLog([sink], batch_wait_s=3600)  # an hour: only a flush or a full batch makes it write
    call(log, 0)
    for _ in range(5):
        await asyncio.sleep(0)  # the writer runs and waits for more
    for i in range(1, 10):
        call(log, i)
    assert writes == []
    assert await log.flush(5)  # hurried: everything so far, in one write
    assert writes == [10]
    for i in range(10, 10 + 64):  # a full batch: written without a flush
        call(log, i)
    await wait_for(lambda: sum(writes) == 74, 5, message="a full batch was held back")
    assert [r.seq for r in sink.records] == list(range(1, 75))
    assert AuditLog([MemorySink()], durability="sync", batch_wait_s=1).batch_wait_s == 0  # sync never lingers
    await log.close()


async def test_async_records_are_sealed_in_the_next_step_in_order_and_nothing_reads_around_them() -> None:
    """``async``: record() leaves the sealing for the loop's next step (the answer goes out first); append(),
    head, pending, flush and close seal what waits first, so no reader sees the chain without them."""
    sink = MemorySink()
    log = AuditLog([sink])
    call(log, 1)
    call(log, 2)
    assert log.recorded == 0  # nothing sealed during the call that recorded
    await asyncio.sleep(0)  # one step of the loop: the callback record() scheduled runs before this task resumes
    assert log.recorded == 2
    call(log, 3)
    sealed = log.append(AuditEvent("tool_call", principal=BOB, tool="after", outcome="ok"))
    assert sealed is not None and sealed.seq == 4  # the waiting record went first
    call(log, 5)
    assert log.head[1] == 5
    call(log, 6)
    assert log.pending >= 1 and log.recorded == 6
    call(log, 7)
    await log.close()  # seals the waiting record before chain_end
    assert [r.seq for r in sink.records] == list(range(1, 9))
    assert [json.loads(r.to_json())["tool"] for r in sink.records[:7]] == ["echo"] * 3 + ["after"] + ["echo"] * 3
    assert sink.records[-1].kind == "chain_end" and verify(sink.records).ok


async def test_sync_records_and_bad_kinds_are_handled_at_once() -> None:
    sink = MemorySink()
    log = AuditLog([sink], durability="sync")
    call(log, 1)
    assert log.recorded == 1  # sync: the guard's settle() waits for this very record
    deferred = AuditLog([MemorySink()])
    with pytest.raises(ValueError, match="invalid audit kind"):
        deferred.record(AuditEvent("Not A Kind", principal=BOB))  # refused to the caller, not in a later step
    assert deferred.recorded == 0
    await log.close()
    await deferred.close()
