"""Audit durability against a real nats-server: a backlog stored as atomic batches with a lost answer doubling
nothing; ``durability: sync`` answering a call only once its record is stored (and refusing to claim success when it
cannot be); a server process SIGKILLed mid-traffic losing no answered record with ``sync``, and its open chain found
by ``audit verify --closed`` either way."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import NatsUnavailableError
from nats_mcp.runtime import Runtime
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.audit.log import AuditLog
from nats_mcp.security.audit.record import AuditRecord
from nats_mcp.security.audit.store import newest, read_range, stream_info, verify_stream
from nats_mcp.security.audit.streamsink import ATOMIC_MIN, StreamSink, audit_stream_config
from nats_mcp.security.guard import CallContext
from nats_mcp.security.policy import Policy
from nats_mcp.security.principal import Principal
from tests.support.env import connected, isolated_env, nats_mcp_exe, settings_for
from tests.support.natsserver import NatsServer, wait_for

ROOT = Path(__file__).resolve().parents[2]
CAROL = Principal(subject="carol", issuer="https://idp.example", method="jwt", roles=frozenset({"agent"}))


class AnswerLostOnce(StreamSink):
    """The stream sink, but the answer to its first atomic batch is lost after the server stored the batch."""

    lost = False

    async def _send(self, js: object, part: Sequence[AuditRecord], expected: int) -> int:
        seq = await super()._send(js, part, expected)
        if len(part) > 1 and not self.lost:
            self.lost = True
            raise TimeoutError("the answer was lost")
        return seq


def event(i: int) -> AuditEvent:
    return AuditEvent("tool_call", principal=CAROL, tool="warp_send_message", outcome="ok", arguments={"i": i})


async def test_a_backlog_goes_as_atomic_batches_and_a_lost_answer_doubles_nothing(nats_conn: NatsConnection) -> None:
    before = audit_stream_config()
    before.allow_atomic = None
    await nats_conn.jetstream.add_stream(before)  # made before atomic batches: the writer's start updates it
    sink = AnswerLostOnce(nats_conn)
    log = AuditLog([sink], transport="http")
    for i in range(3 * ATOMIC_MIN):  # queued before the writer runs: one backlog
        log.record(event(i))
    assert await log.flush(30), log.stats()
    assert sink.lost and sink.atomic
    assert sink.round_trips <= 4, sink.round_trips  # the batch, its retry (stored already: found, not resent)
    trips = sink.round_trips
    for i in range(3 * ATOMIC_MIN, 3 * ATOMIC_MIN + 3):  # one at a time: one acknowledged publish each
        log.record(event(i))
        assert await log.flush(10)
    assert sink.round_trips == trips + 3
    info = await stream_info(nats_conn)
    assert info is not None and info.config.allow_atomic
    info.config.allow_atomic = False  # an operator switches atomic batches off under a running writer
    await nats_conn.jetstream.update_stream(info.config)
    total = 3 * ATOMIC_MIN + 3 + ATOMIC_MIN
    for i in range(3 * ATOMIC_MIN + 3, total):
        log.record(event(i))
    assert await log.flush(30), log.stats()
    assert sink.round_trips == trips + 3 + 1 + ATOMIC_MIN  # the refused batch, then one publish per record
    assert not sink.atomic  # and no more batches tried
    await log.close()
    info = await stream_info(nats_conn)
    assert info is not None
    stored = [json.loads(m.data) async for m in read_range(nats_conn.client, 1, info.state.last_seq)]
    assert [r["seq"] for r in stored] == list(range(1, total + 2))  # in order, nothing doubled or missing
    assert len({r["args_digest"] for r in stored[:-1]}) == total
    result = await verify_stream(nats_conn)
    assert result is not None and result.ok and result.open_chains == [], result.summary


async def test_sync_durability_answers_once_the_record_is_stored(tmp_path: Path, nats_server: NatsServer) -> None:
    async def run() -> str:
        return "done"

    for durability in ("sync", "async"):
        settings = settings_for(
            tmp_path / durability,
            NATS_URL=nats_server.url,
            NATS_MCP_SECURITY_AUDIT_DURABILITY=durability,
            NATS_MCP_SECURITY_AUDIT_SYNC_TIMEOUT_S="1",
        )
        async with Runtime(settings, Policy.load(None), transport="http", observe=False, coordinate=False) as rt:
            assert await rt.conn.wait_connected(10)
            ctx = CallContext(CAROL, "http", "team")
            assert await rt.guard.call(ctx, "channels_list", {"i": 1}, run, lambda _: "ok", needs=()) == "done"
            if durability == "sync":  # answered: so its record is in the stream already
                records, _ = await newest(rt.conn, 1, chain=rt.audit.chain)
                assert [json.loads(m.data)["seq"] for m in records] == [rt.audit.head[1]]
            nats_server.stop()
            await wait_for(lambda: not rt.conn.connected, 10, message="the client never saw NATS go")
            if durability == "sync":  # the call ran, its record cannot be stored: no answer claims success
                with pytest.raises(NatsUnavailableError, match="audit record"):
                    await rt.guard.call(ctx, "channels_list", {"i": 2}, run, lambda _: "ok", needs=())
            else:  # answered at once; the record waits in the queue
                assert await rt.guard.call(ctx, "channels_list", {"i": 2}, run, lambda _: "ok", needs=()) == "done"
                assert rt.audit.pending > 0
            nats_server.start()
            await wait_for(lambda: rt.conn.connected, 30, message="no reconnection")
    async with connected(tmp_path / "reader", nats_server.url) as conn:
        result = await verify_stream(conn)
        assert result is not None and result.ok and result.records == 2 * 3, result.summary  # 2 calls + end, each


@pytest.mark.slow
async def test_a_crashed_server_loses_no_answered_record_with_sync_and_verify_names_its_chain(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    chains: dict[str, str] = {}
    answered: dict[str, int] = {}
    for durability in ("sync", "async"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.audit_crash",
            nats_server.url,
            durability,
            str(tmp_path / durability),
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        assert proc.stdout is not None
        try:
            chains[durability] = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
            seq = 0
            while seq < 200:  # answered calls, then the crash mid-traffic
                seq = int(await asyncio.wait_for(proc.stdout.readline(), 30))
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        answered[durability] = seq
    async with connected(tmp_path / "reader", nats_server.url) as conn:
        for durability, chain in chains.items():
            records, _ = await newest(conn, 1, chain=chain)
            last = json.loads(records[0].data)["seq"]
            if durability == "sync":
                assert last >= answered[durability], "a record the crashed server had answered for is missing"
        result = await verify_stream(conn)
        assert result is not None and result.ok and sorted(result.open_chains) == sorted(chains.values())
    done = subprocess.run(
        [nats_mcp_exe(), "audit", "verify", "--closed"],
        env=isolated_env(tmp_path / "cli", NATS_URL=nats_server.url, COLUMNS="250"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    for chain in chains.values():
        assert f"chain {chain}, writer _INBOX: no end record after seq" in done.stderr
