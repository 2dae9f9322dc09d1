"""Integration tests of the audit chain in a real nats-server: concurrent writers in their own chains, tampering
of every kind caught by the stream verifier, a NATS restart with records queued, and no secret in stored bytes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StorageType
from nats.js.errors import APIError

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import StoredMsg
from nats_mcp.bus.layout import AUDIT_STREAM, audit_subject, audit_writer
from nats_mcp.bus.natsperms import build_permissions
from nats_mcp.bus.publish import acked
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.audit.log import AuditLog
from nats_mcp.security.audit.record import record_hash
from nats_mcp.security.audit.store import (
    StreamSink,
    audit_stream_config,
    newest,
    read_range,
    stream_info,
    verify_stream,
)
from nats_mcp.security.principal import Principal
from tests.support.env import connected, isolated_env, nats_mcp_exe
from tests.support.natsserver import LOOPBACK, NatsServer, wait_for

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjYXJvbCJ9.c3VwZXItc2VjcmV0LXNpZ25hdHVyZQ"
CAROL = Principal(subject="carol", issuer="https://idp.example", method="jwt", peer="192.0.2.10", key_id=None)
WRITER = audit_writer(None)
"""The writer token of a connection without an inbox prefix (these tests' default)."""


def writer(conn: NatsConnection, **options: Any) -> AuditLog:
    return AuditLog([StreamSink(conn)], transport="http", **options)


def call(log: AuditLog, i: int, **extra: Any) -> None:
    log.record(
        AuditEvent(
            "tool_call",
            principal=CAROL,
            tool="warp_send_message",
            namespace="team",
            outcome="ok",
            latency_ms=1.5,
            arguments={"i": i, **extra},
        ),
    )


async def stored(conn: NatsConnection) -> list[StoredMsg]:
    info = await stream_info(conn)
    assert info is not None
    return [m async for m in read_range(conn.client, info.state.first_seq, info.state.last_seq)]


async def rewrite_stream(url: str, change: Callable[[list[tuple[str, bytes]]], list[tuple[str, bytes]]]) -> None:
    """What someone with the rights to delete and recreate the audit stream can do: deletes and purges are refused,
    so they read everything, recreate the stream and publish their version."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(AUDIT_STREAM)
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(AUDIT_STREAM, seq)
            messages.append((msg.subject, msg.data))
        await js.delete_stream(AUDIT_STREAM)
        await js.add_stream(audit_stream_config())
        for subject, data in change(messages):
            await js.publish(subject, data, stream=AUDIT_STREAM)
    finally:
        await nc.close()


async def test_two_writers_land_in_two_chains_that_verify(tmp_path: Path, nats_server: NatsServer) -> None:
    async with connected(tmp_path / "a", nats_server.url) as conn_a, connected(tmp_path / "b", nats_server.url) as b:
        log_a, log_b = writer(conn_a), writer(b)

        async def burst(log: AuditLog) -> None:
            for i in range(60):
                call(log, i)
                if i % 7 == 0:
                    await asyncio.sleep(0)  # let the other writer interleave

        await asyncio.gather(burst(log_a), burst(log_b))
        await asyncio.gather(log_a.close(), log_b.close())
        messages = await stored(conn_a)
        assert len(messages) == 122
        subjects = [m.subject for m in messages]
        assert set(subjects) == {audit_subject(log_a.chain, WRITER), audit_subject(log_b.chain, WRITER)}
        assert subjects != sorted(subjects), "the two chains interleave in the stream"
        result = await verify_stream(conn_a)
        assert result is not None and result.ok, result.summary
        assert result.summary == "122 records in 2 chains verified"
        assert result.open_chains == []
        info = await stream_info(conn_a)
        assert info is not None
        assert info.config.deny_delete and info.config.deny_purge and info.config.storage == StorageType.FILE


async def test_the_stream_refuses_deletes_and_purges(nats_conn: NatsConnection) -> None:
    log = writer(nats_conn)
    for i in range(3):
        call(log, i)
    await log.close()
    js = nats_conn.jetstream
    with pytest.raises(APIError, match="not permitted"):
        await js.delete_msg(AUDIT_STREAM, 2)
    with pytest.raises(APIError):
        await js.purge_stream(AUDIT_STREAM)
    result = await verify_stream(nats_conn)
    assert result is not None and result.ok and result.records == 4


async def test_a_modified_copy_republished_on_the_chain_is_named(nats_conn: NatsConnection) -> None:
    log = writer(nats_conn)
    for i in range(5):
        call(log, i)
    await log.close()
    messages = await stored(nats_conn)
    forged = json.loads(messages[2].data)
    forged["outcome"] = "forbidden"
    ack = await nats_conn.jetstream.publish(messages[2].subject, json.dumps(forged).encode(), stream=AUDIT_STREAM)
    result = await verify_stream(nats_conn)
    assert result is not None and not result.ok and result.problem is not None
    assert result.problem.chain == log.chain and result.problem.seq == 3
    assert result.problem.where == f"stream sequence {ack.seq}"
    assert "altered" in result.problem.what
    assert result.problem.raw is not None and '"forbidden"' in result.problem.raw


@pytest.mark.parametrize("tamper", ["alter", "remove", "reorder", "resealed"])
async def test_a_rewritten_stream_fails_verification(tmp_path: Path, nats_server: NatsServer, tamper: str) -> None:
    async with connected(tmp_path, nats_server.url) as conn:
        other, log = writer(conn), writer(conn)
        for i in range(4):
            call(log, i)
            call(other, i)
        await asyncio.gather(log.close(), other.close())
        target = [m for m in await stored(conn) if m.subject == audit_subject(log.chain, WRITER)][2]  # seq 3 of `log`

        def change(messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
            at = next(i for i, (_, data) in enumerate(messages) if data == target.data)
            data = json.loads(messages[at][1])
            if tamper == "alter":
                messages[at] = (messages[at][0], json.dumps({**data, "tool": "warp_read_inbox"}).encode())
            elif tamper == "resealed":  # the forger recomputes the hash: the next record's prev catches it
                data["tool"] = "warp_read_inbox"
                messages[at] = (messages[at][0], json.dumps({**data, "hash": record_hash(data)}).encode())
            elif tamper == "remove":
                del messages[at]
            else:
                after = next(i for i in range(at + 1, len(messages)) if messages[i][0] == messages[at][0])
                messages[at], messages[after] = messages[after], messages[at]
            return messages

        await rewrite_stream(nats_server.url, change)
        result = await verify_stream(conn)
        assert result is not None and not result.ok and result.problem is not None, tamper
        problem = result.problem
        assert problem.chain == log.chain, problem
        assert problem.seq == {"alter": 3, "resealed": 4, "remove": 4, "reorder": 4}[tamper], problem
        assert problem.where.startswith("stream sequence "), problem


async def test_a_record_forged_onto_a_live_chain_makes_the_writer_move_on(nats_conn: NatsConnection) -> None:
    """A perfectly sealed record appended to a live writer's chain: the writer's next publish expects its own last
    record, fails, continues in a new chain that says so, and the stream verifier names the forged record."""
    log = writer(nats_conn)
    first = log.chain
    for i in range(3):
        call(log, i)
    assert await log.flush(10)
    _, seq, head = log.head
    last = json.loads((await stored(nats_conn))[-1].data)
    forged = {**last, "seq": seq + 1, "prev": head, "outcome": "ok", "tool": "warp_forged"}
    forged["hash"] = record_hash(forged)
    await nats_conn.jetstream.publish(audit_subject(first, WRITER), json.dumps(forged).encode(), stream=AUDIT_STREAM)
    call(log, 3)
    assert await log.flush(10)
    await log.close()
    assert log.chain != first
    chains = {}
    for msg in await stored(nats_conn):
        data = json.loads(msg.data)
        chains.setdefault(data["chain"], []).append(data)
    conflict = chains[log.chain][0]
    assert conflict["kind"] == "chain_conflict" and conflict["ref"] == f"{first}:3"
    assert chains[log.chain][1]["args_digest"] is not None  # the record that could not go on the old chain
    result = await verify_stream(nats_conn)
    assert result is not None and not result.ok and result.problem is not None
    assert (result.problem.chain, result.problem.seq) == (first, 4)
    assert "someone other than the chain's writer" in result.problem.what


async def test_a_wiped_stream_is_noticed_by_a_live_writer(tmp_path: Path, nats_server: NatsServer) -> None:
    async with connected(tmp_path, nats_server.url) as conn:
        log = writer(conn)
        first = log.chain
        for i in range(3):
            call(log, i)
        assert await log.flush(10)
        await conn.jetstream.delete_stream(AUDIT_STREAM)
        call(log, 3)
        assert await log.flush(10)
        await log.close()
        result = await verify_stream(conn)
        assert result is not None and not result.ok and result.problem is not None
        assert result.problem.chain == first and "its last records were removed" in result.problem.what


async def test_nats_restart_with_records_queued_loses_nothing(tmp_path: Path, nats_server: NatsServer) -> None:
    async with connected(tmp_path, nats_server.url) as conn:
        log = writer(conn, max_pending=500)
        for i in range(10):
            call(log, i)
        assert await log.flush(10)
        nats_server.stop()
        await wait_for(lambda: not conn.connected, 10, message="the client saw NATS go")
        for i in range(10, 400):  # within the bound
            call(log, i)
        await wait_for(lambda: log.stats()["sinks"]["stream"]["failing"], 10, message="the stream sink failed")
        assert log.pending > 0 and log.dropped_total == 0
        nats_server.start()
        assert await log.flush(30), log.stats()
        await log.close()
        result = await verify_stream(conn)
        assert result is not None and result.ok, result.summary
        assert result.records == 401 and len(result.chains) == 1  # no conflict, no second chain
        digests = [json.loads(m.data)["args_digest"] for m in await stored(conn)]
        assert len(set(digests[:-1])) == 400  # every call exactly once


async def test_no_secret_in_the_stored_bytes(nats_conn: NatsConnection) -> None:
    log = writer(nats_conn)
    call(log, 0, token=TOKEN, authorization=f"Bearer {TOKEN}")
    log.record(
        AuditEvent(
            "auth_failure",
            transport="http",
            peer="198.51.100.4",
            outcome="unauthenticated",
            reason=f"bad_signature for {TOKEN}",
        ),
    )
    log.record(AuditEvent("denied", principal=CAROL, tool=TOKEN, outcome="forbidden", reason="tool not allowed"))
    await log.close()
    raw = b"".join(m.data for m in await stored(nats_conn))
    assert raw.count(b'"seq"') == 4
    for secret in (TOKEN, TOKEN.split(".")[2], "c3VwZXItc2VjcmV0"):
        assert secret.encode() not in raw
    result = await verify_stream(nats_conn)
    assert result is not None and result.ok


async def test_newest_reads_the_tail_of_one_chain_or_all(nats_conn: NatsConnection) -> None:
    busy, quiet = writer(nats_conn), writer(nats_conn)
    call(quiet, 0)
    assert await quiet.flush(10)
    for i in range(700):
        call(busy, i)
    call(quiet, 1)
    await asyncio.gather(busy.flush(10), quiet.flush(10))
    everything, last = await newest(nats_conn, 5)
    assert [m.seq for m in everything] == list(range(last - 4, last + 1))
    mine, _ = await newest(nats_conn, 5, chain=quiet.chain)
    assert [json.loads(m.data)["seq"] for m in mine] == [1, 2]  # found across 700 newer records of another chain
    await asyncio.gather(busy.close(), quiet.close())


AGENT = "a7" * 16
AGENT_PERMS = build_permissions("agent", ["team"], agent=AGENT)


class LeastPrivilegeServer(NatsServer):
    """An admin user, and an agent user with exactly the permissions `nats-mcp nats-permissions` prints."""

    def config_sections(self) -> list[str]:
        agent = textwrap.indent(AGENT_PERMS.render(), "      ")
        return [
            "authorization {\n  users = [\n"
            '    { user: "admin", password: "admin-pw" }\n'
            f'    {{\n      user: "agent"\n      password: "agent-pw"\n{agent}    }}\n'
            "  ]\n}"
        ]

    def url_for(self, user: str) -> str:
        return f"nats://{user}:{user}-pw@{LOOPBACK}:{self.port}"


@pytest.mark.slow
@pytest.mark.parametrize("provisioned", ["as nats-mcp would", "with other settings"])
async def test_an_agent_with_least_privilege_appends_to_a_provisioned_stream(tmp_path: Path, provisioned: str) -> None:
    """The agent may not create or update the stream (an admin provisions it), nor delete from it, yet it writes: a
    backlog as one atomic batch where the stream allows them, one publish per record where it does not."""
    with LeastPrivilegeServer(tmp_path / "nats").start() as server:
        async with connected(tmp_path / "admin", server.url_for("admin")) as admin:
            config = audit_stream_config()
            if provisioned != "as nats-mcp would":
                config.description, config.deny_delete, config.deny_purge = "made by hand", False, False
                config.allow_atomic = False  # made before atomic batches: the agent cannot change that
            await admin.jetstream.add_stream(config)
            extra = {"NATS_MCP_NATS_INBOX_PREFIX": AGENT_PERMS.inbox_prefix}
            async with connected(tmp_path / "agent", server.url_for("agent"), **extra) as agent:
                log = writer(agent)
                for i in range(100):  # queued at once: more than an atomic batch's minimum
                    call(log, i)
                assert await log.flush(30), log.stats()
                await log.close()
                with pytest.raises(Exception):  # noqa: B017, PT011 - a refusal is a timeout or an API error
                    await agent.jetstream.delete_msg(AUDIT_STREAM, 1)
            result = await verify_stream(admin)
            assert result is not None and result.ok and result.records == 101, result.summary
            violations = [line for line in server.log_text().splitlines() if "Violation" in line]
            assert any(f"STREAM.MSG.DELETE.{AUDIT_STREAM}" in v for v in violations)
            if provisioned == "as nats-mcp would":  # nothing to update: the agent never asks for what it may not do
                assert all(f"STREAM.MSG.DELETE.{AUDIT_STREAM}" in v for v in violations), violations


ADMIN = Principal(subject="admin", issuer="nats-mcp", method="local", peer=None, key_id=None)


def verify_cli(tmp_path: Path, url: str) -> tuple[int, dict[str, Any], str]:
    """`nats-mcp audit verify --json` as an operator runs it: (exit code, report, stderr)."""
    done = subprocess.run(
        [nats_mcp_exe(), "audit", "verify", "--json"],
        env=isolated_env(tmp_path, NATS_URL=url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout), done.stderr


async def test_an_agent_cannot_write_another_writers_chain(tmp_path: Path) -> None:
    """Issue 19 #7 against a real nats-server and the printed agent permissions: the agent's forged record on the
    admin's chain subject is refused by the server; its own chain blaming the admin for a DLQ discard verifies, but
    is reported as written by the agent's user; the admin's chain continued under the agent's subject fails verify,
    naming both writers."""
    agent_writer = audit_writer(AGENT_PERMS.inbox_prefix)
    with LeastPrivilegeServer(tmp_path / "nats").start() as server:
        async with connected(tmp_path / "admin", server.url_for("admin")) as admin:
            await admin.jetstream.add_stream(audit_stream_config())
            real = writer(admin)
            call(real, 0)
            await real.close()
            admin_chain = real.chain
            last = json.loads((await stored(admin))[-1].data)
            extra = {"NATS_MCP_NATS_INBOX_PREFIX": AGENT_PERMS.inbox_prefix}
            async with connected(tmp_path / "agent", server.url_for("agent"), **extra) as agent:
                # 1. a continuation of the admin's chain, on the admin's own subject: the server refuses it
                forged = {
                    **last,
                    "kind": "tool_call",
                    "seq": last["seq"] + 1,
                    "prev": last["hash"],
                    "tool": "dlq_discard",
                }
                forged["hash"] = record_hash(forged)
                target = audit_subject(admin_chain, WRITER)
                await agent.client.publish(target, json.dumps(forged).encode())
                await agent.client.flush()
                await wait_for(
                    lambda: any("Violation" in line and target in line for line in server.log_text().splitlines()), 10
                )

                # 2. a self-consistent chain of its own claiming the admin discarded a DLQ entry: stored, attributed
                lie = AuditLog([StreamSink(agent)], transport="cli")
                lie.record(
                    AuditEvent(
                        "tool_call",
                        principal=ADMIN,
                        tool="dlq_discard",
                        namespace="team",
                        outcome="ok",
                        arguments={"id": "x"},
                    ),
                )
                await lie.close()
            code, report, _ = verify_cli(tmp_path / "cli1", server.url_for("admin"))
            assert code == 0 and report["ok"], report
            writers = {c["chain"]: c["writer"] for c in report["chains"]}
            assert writers == {admin_chain: WRITER, lie.chain: agent_writer}

            # 3. the admin's chain continued under the agent's own writer subject: verify exits 1 naming it
            async with connected(tmp_path / "agent2", server.url_for("agent"), **extra) as agent:
                ack = await agent.jetstream.publish(
                    audit_subject(admin_chain, agent_writer), json.dumps(forged).encode(), stream=AUDIT_STREAM
                )
            code, report, _ = verify_cli(tmp_path / "cli2", server.url_for("admin"))
            assert code == 1 and not report["ok"], report
            problem = report["problem"]
            assert (problem["chain"], problem["seq"], problem["where"]) == (
                admin_chain,
                3,
                f"stream sequence {ack.seq}",
            )
            assert f"written by writer {agent_writer}, but the chain was written by writer {WRITER}" in problem["what"]


async def test_chains_stored_before_writers_were_named_verify_without_a_writer(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """Records on the old subject (``nmcp.audit.<chain>``) still verify, reported with no writer; the same chain found
    under the old subject and a writer's fails: two writers."""
    async with connected(tmp_path, nats_server.url) as conn:
        log = writer(conn)
        for i in range(3):
            call(log, i)
        await log.close()

        def legacy(messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
            return [(f"nmcp.audit.{subject.rsplit('.', 1)[1]}", data) for subject, data in messages]

        await rewrite_stream(nats_server.url, legacy)
        result = await verify_stream(conn)
        assert result is not None and result.ok, result.summary
        assert [(c.chain, c.writer) for c in result.chains] == [(log.chain, None)]

        def doubled(messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
            return [*messages, (audit_subject(log.chain, WRITER), messages[-1][1])]

        await rewrite_stream(nats_server.url, doubled)
        result = await verify_stream(conn)
        assert result is not None and not result.ok and result.problem is not None
        assert "written by writer _INBOX, but the chain was written by an unknown writer" in result.problem.what


async def test_the_sinks_acknowledged_write_answers_as_a_request_would(nats_conn: NatsConnection) -> None:
    """bus/publish.py ``acked`` (how the stream sink sends each write): every caller gets its own answer, concurrent
    or not; no responders is NoRespondersError; nothing answering in time is a nats TimeoutError, after which the
    late answer is not taken for the next write's and no reply slot is left behind."""
    nc = nats_conn.client
    late: list[Any] = []

    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    async def silent(msg: Any) -> None:
        late.append(msg)  # answered only after the writer gave up

    await nc.subscribe("test.acked.echo", cb=echo)
    await nc.subscribe("test.acked.silent", cb=silent)
    answers = await asyncio.gather(*(acked(nc, "test.acked.echo", b"%d" % i, {"X": str(i)}, 5) for i in range(20)))
    assert [m.data for m in answers] == [b"%d" % i for i in range(20)]
    with pytest.raises(nats.errors.NoRespondersError):
        await acked(nc, "test.acked.nobody", b"x", {}, 5)
    with pytest.raises(nats.errors.TimeoutError):
        await acked(nc, "test.acked.silent", b"x", {}, 0.2)
    await wait_for(lambda: late, 5, message="the silent responder never got the request")
    await late[0].respond(b"too late")
    assert (await acked(nc, "test.acked.echo", b"next", {}, 5)).data == b"next"
    assert not [t for t in nc._resp_map if t.startswith("a")]  # acked's tokens; nats-py's own are NUIDs
