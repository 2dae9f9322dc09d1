"""Resend deduplication (coord/replay.py) against a real nats-server: two processes on one NATS, the crash window."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nats_mcp.api.resend import token_of
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import KeyNotFound, nats_edge
from nats_mcp.bus.layout import Layout
from nats_mcp.coord.channels import ChannelService
from nats_mcp.coord.context import Caller
from nats_mcp.coord.replay import CallRecord, CallRecords, Outcome, call_token, fingerprint
from nats_mcp.coord.work.service import WorkService
from nats_mcp.core import reqctx
from nats_mcp.security.principal import Principal
from tests.support.env import connected
from tests.support.natsserver import NatsServer, wait_for

NS = "replay"
LAYOUT = Layout(NS)
FP = fingerprint("channels_send", {"channel": "roadmap", "message": "hello"})


class DictCodec:
    """Outcomes are the attempt's dicts; a result with ``retry`` is not kept."""

    def encode(self, result: Outcome) -> Outcome | None:
        return None if result.get("retry") else result

    def decode(self, outcome: Outcome) -> Outcome:
        return outcome

    def busy(self, retry_after_s: float) -> Outcome:
        return {"busy": retry_after_s}

    def reused(self) -> Outcome:
        return {"reused": True}

    def unkept(self) -> Outcome:
        return {"unkept": True}


CODEC = DictCodec()


@dataclass
class Process:
    """One server process's view: its own NATS connection, channel and work services, and call records."""

    conn: NatsConnection
    records: CallRecords
    channels: ChannelService
    work: WorkService | None = None
    attempts: list[str] = field(default_factory=list)

    def sender(self, caller: Caller, message: str = "hello") -> Callable[[], Awaitable[Outcome]]:
        async def attempt() -> Outcome:
            self.attempts.append(message)
            sent = await self.channels.send(caller, "alice", "roadmap", message)
            return {"id": sent.id, "sequence": sent.sequence}

        return attempt


@asynccontextmanager
async def process(tmp_path: Path, server: NatsServer, **records: Any) -> AsyncIterator[Process]:
    async with connected(tmp_path / uuid.uuid4().hex[:8], server.url, NATS_MCP_NAMESPACE=NS) as conn:
        work = WorkService(conn, conn.settings, LAYOUT)
        await work.ensure()
        yield Process(
            conn,
            CallRecords(conn, LAYOUT, owner=f"proc-{uuid.uuid4().hex[:6]}", **records),
            ChannelService(conn, conn.settings, LAYOUT),
            work,
        )


def caller() -> Caller:
    return Caller(guid=uuid.uuid4().hex, namespace=NS, project_id="0" * 16, owner="o")


def token() -> str:
    return call_token("apikey\0alpha\0", uuid.uuid4().hex, 7)


async def channel_count(p: Process) -> int:
    info = await p.conn.jetstream.stream_info(LAYOUT.channel_stream("roadmap"))
    return int(info.state.messages)


async def record(p: Process, tok: str) -> tuple[CallRecord | None, int]:
    """The call's record and revision; (None, 0) when there is none."""
    kv = await p.records.bucket.kv()
    try:
        with nats_edge():
            entry = await kv.get(Layout.call_key(tok))
    except KeyNotFound:  # never written, or deleted
        return None, 0
    return CallRecord.decode(entry.value), int(entry.revision or 0)


async def running(p: Process, tok: str) -> int | None:
    """The revision of the call's record while it is running."""
    found, revision = await record(p, tok)
    return revision if found is not None and found.state == "running" else None


# -- two processes ------------------------------------------------------------------------------


async def test_a_resend_to_another_process_answers_the_first_outcome(tmp_path: Path, nats_server: NatsServer) -> None:
    who, tok = caller(), token()
    async with process(tmp_path, nats_server) as a, process(tmp_path, nats_server) as b:
        first = await a.records.run(tok, FP, a.sender(who), CODEC)
        again = await b.records.run(tok, FP, b.sender(who), CODEC)
        assert again == first and b.attempts == [] and a.attempts == ["hello"]
        assert await channel_count(a) == 1
        stored, _ = await record(b, tok)
        assert stored is not None and stored.state == "done" and stored.outcome == first

        # a new request (another token) with the same arguments is a new effect
        other = await b.records.run(token(), FP, b.sender(who), CODEC)
        assert other["id"] != first["id"] and await channel_count(a) == 2


async def test_a_resend_waits_for_a_live_first_attempt_that_renews_its_lease(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    who, tok, gate = caller(), token(), asyncio.Event()
    async with (
        process(tmp_path, nats_server, lease_s=0.6) as a,
        process(tmp_path, nats_server, lease_s=0.6, wait_s=60) as b,
    ):

        async def slow() -> Outcome:
            await gate.wait()
            return await a.sender(who)()

        first = asyncio.create_task(a.records.run(tok, FP, slow, CODEC))
        created = await wait_for(lambda: running(a, tok), 10, message="no running record")
        second = asyncio.create_task(b.records.run(tok, FP, b.sender(who), CODEC))

        # two renewals: more than a whole lease has passed since the record was created, and B has not taken over
        async def renewed_twice() -> bool:
            revision = await running(a, tok)
            return revision is not None and revision >= created + 2

        await wait_for(renewed_twice, 10, message="the owner never renewed its lease")
        assert not second.done()
        gate.set()
        assert await second == await first
        assert a.attempts == ["hello"] and b.attempts == [] and await channel_count(a) == 1


async def test_a_resend_that_waits_too_long_answers_busy_then_the_outcome(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    who, tok, gate = caller(), token(), asyncio.Event()
    async with process(tmp_path, nats_server) as a, process(tmp_path, nats_server, wait_s=0.1) as b:

        async def held() -> Outcome:
            await gate.wait()
            return await a.sender(who)()

        first = asyncio.create_task(a.records.run(tok, FP, held, CODEC))
        await wait_for(lambda: running(a, tok), 10, message="no running record")
        busy = await b.records.run(tok, FP, b.sender(who), CODEC)
        assert set(busy) == {"busy"} and 0 < busy["busy"] <= a.records.lease_s
        gate.set()
        outcome = await first
        assert await b.records.run(tok, FP, b.sender(who), CODEC) == outcome
        assert b.attempts == [] and await channel_count(a) == 1


# -- the crash window: the effect is stored, the outcome is not ---------------------------------------


async def dead_owner(p: Process, tok: str, fp: str = FP) -> None:
    """The record a process leaves when it dies mid-call: running, its lease lapsed."""
    kv = await p.records.bucket.kv()
    started = time.time() - 120
    await kv.create(Layout.call_key(tok), CallRecord("running", "dead-proc", fp, started, started + 30).encode())


async def test_a_resend_after_the_owner_died_past_its_publish_sends_nothing_twice(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    who, tok = caller(), token()
    async with process(tmp_path, nats_server) as dead, process(tmp_path, nats_server) as b:
        with reqctx.effects(tok):  # what the dead process did before dying: the message is stored
            stored = await dead.channels.send(who, "alice", "roadmap", "hello")
        await dead_owner(dead, tok)

        outcome = await b.records.run(tok, FP, b.sender(who), CODEC)
        assert b.attempts == ["hello"]  # the call ran again ...
        assert outcome == {"id": stored.id, "sequence": stored.sequence}  # ... and answered the first message
        assert await channel_count(b) == 1
        found, _ = await record(b, tok)
        assert found is not None and found.state == "done" and found.owner.startswith(b.records.owner + "#")


async def test_a_broadcast_rerun_after_a_crash_queues_one_item(tmp_path: Path, nats_server: NatsServer) -> None:
    who, tok = caller(), token()
    fp = fingerprint("work_broadcast", {"taskId": "t"})

    async def broadcast(p: Process) -> Outcome:
        assert p.work is not None
        item = await p.work.broadcast(who, task_id="t", description="build", capability="python")
        return {"id": item.id}

    async with process(tmp_path, nats_server) as dead, process(tmp_path, nats_server) as b:
        with reqctx.effects(tok):
            first = await broadcast(dead)
        await dead_owner(dead, tok, fp)
        assert await b.records.run(tok, fp, lambda: broadcast(b), CODEC) == first
        info = await b.conn.jetstream.stream_info(LAYOUT.work_stream)
        assert info.state.messages == 1

        # without the derived ids (no effects key) the same re-run would have queued a second item
        await broadcast(b)
        assert (await b.conn.jetstream.stream_info(LAYOUT.work_stream)).state.messages == 2


# -- what is kept, what is not ----------------------------------------------------------------------


async def test_a_reused_request_id_with_other_arguments_runs_nothing(tmp_path: Path, nats_server: NatsServer) -> None:
    who, tok = caller(), token()
    async with process(tmp_path, nats_server) as a:
        await a.records.run(tok, FP, a.sender(who), CODEC)
        other = fingerprint("channels_send", {"channel": "roadmap", "message": "other"})
        assert await a.records.run(tok, other, a.sender(who, "other"), CODEC) == {"reused": True}
        assert a.attempts == ["hello"] and await channel_count(a) == 1


async def test_retryable_failures_and_exceptions_leave_no_record(tmp_path: Path, nats_server: NatsServer) -> None:
    tok, calls = token(), []
    async with process(tmp_path, nats_server) as a:

        async def unavailable() -> Outcome:
            calls.append("retry")
            return {"retry": True}

        async def broken() -> Outcome:
            calls.append("raise")
            raise RuntimeError("tool bug")

        async def fine() -> Outcome:
            calls.append("ok")
            return {"ok": 1}

        assert await a.records.run(tok, FP, unavailable, CODEC) == {"retry": True}
        assert await record(a, tok) == (None, 0)
        with pytest.raises(RuntimeError):
            await a.records.run(tok, FP, broken, CODEC)

        async def released() -> bool:
            return (await record(a, tok))[0] is None

        await wait_for(released, 10, message="the record of a call that raised was not released")
        assert await a.records.run(tok, FP, fine, CODEC) == {"ok": 1}
        assert await a.records.run(tok, FP, fine, CODEC) == {"ok": 1}
        assert calls == ["retry", "raise", "ok"]


async def test_an_outcome_too_large_to_keep_is_not_replayed_as_empty(tmp_path: Path, nats_server: NatsServer) -> None:
    tok, calls = token(), []
    async with process(tmp_path, nats_server) as a:

        async def big() -> Outcome:
            calls.append(1)
            return {"blob": "x" * (600 * 1024)}

        assert len((await a.records.run(tok, FP, big, CODEC))["blob"]) == 600 * 1024
        assert await a.records.run(tok, FP, big, CODEC) == {"unkept": True}
        assert calls == [1]


# -- the key --------------------------------------------------------------------------------------------


def request(principal_session: str | None, request_id: int = 5, version: str = "2025-11-25") -> Any:
    headers = {} if principal_session is None else {"mcp-session-id": principal_session}
    return SimpleNamespace(request_id=request_id, protocol_version=version, request=SimpleNamespace(headers=headers))


async def test_principals_never_share_a_record(tmp_path: Path, nats_server: NatsServer) -> None:
    alpha = Principal(subject="alpha", issuer="apikey", method="apikey")
    beta = Principal(subject="beta", issuer="apikey", method="apikey")
    tok_a, tok_b = token_of(request("s1"), alpha), token_of(request("s1"), beta)
    assert tok_a is not None and tok_b is not None and tok_a != tok_b
    assert token_of(request("s1"), Principal(subject="alpha", issuer="apikey", method="apikey", agent="w2")) != tok_a
    assert token_of(request("s1", 6), alpha) != tok_a
    # no session, the sessionless revision, or no request id: not deduplicated
    assert token_of(request(None), alpha) is None
    assert token_of(request("s1", version="2026-07-28"), alpha) is None
    assert token_of(SimpleNamespace(request_id=5, protocol_version="2025-11-25", request=None), alpha) is None  # type: ignore[arg-type]

    who = caller()
    async with process(tmp_path, nats_server) as a:
        first = await a.records.run(tok_a, FP, a.sender(who), CODEC)
        second = await a.records.run(tok_b, FP, a.sender(who), CODEC)
        assert first != second and a.attempts == ["hello", "hello"] and await channel_count(a) == 2


# -- a bucket the NATS user may not use ---------------------------------------------------------------

DENIED = f"""
authorization {{
  users = [
    {{ user: "full", password: "full-pass" }},
    {{ user: "gw", password: "gw-pass", permissions: {{
        publish: {{ allow: [">"], deny: ["$KV.{LAYOUT.calls_bucket}.>", "$JS.API.*.*.KV_{LAYOUT.calls_bucket}"] }},
        subscribe: {{ allow: [">"] }} }} }}
  ]
}}
"""


async def test_calls_run_without_a_record_when_the_bucket_is_denied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    who, tok = caller(), token()
    with NatsServer(tmp_path / "nats", extra_config=DENIED).start() as server:
        url = f"nats://gw:gw-pass@127.0.0.1:{server.port}"
        async with connected(tmp_path / "gw", url, NATS_MCP_NAMESPACE=NS) as conn:
            p = Process(conn, CallRecords(conn, LAYOUT), ChannelService(conn, conn.settings, LAYOUT))
            with caplog.at_level(logging.WARNING, logger="nats_mcp.coord.replay"):
                first = await p.records.run(tok, FP, p.sender(who), CODEC)
                again = await p.records.run(tok, FP, p.sender(who), CODEC)
            assert p.attempts == ["hello", "hello"]  # no record: the resend ran again ...
            assert again == first and await channel_count(p) == 1  # ... and its publish was dropped as a duplicate
            # one failure, one warning: the second call did not try the bucket again (it would have waited for a
            # request timeout and warned again)
            warnings = [r.getMessage() for r in caplog.records if "without resend deduplication" in r.getMessage()]
            assert len(warnings) == 1 and LAYOUT.calls_bucket in warnings[0]
