"""Boundary of resend deduplication over HTTP: a raw client resends a tools/call of its session, real processes."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nats_mcp.bus.layout import Layout
from nats_mcp.coord.replay import CallRecord
from tests.support.env import connected
from tests.support.http_server import api_key, http_client, policy_file, serving
from tests.support.natsserver import NatsServer, wait_for
from tests.support.resend import Session, call, code

pytestmark = pytest.mark.slow

NS = "team-resend"


async def history(session: Session, request_id: int, channel: str) -> list[str]:
    page = await session.ok(request_id, "warp_channels_read", channel=channel, limit=100)
    return [m["message"] for m in page["messages"]]


async def test_a_resent_request_answers_the_first_outcome_with_one_effect(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    env = {"NATS_MCP_NAMESPACE": NS, "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    key, _ = await api_key(tmp_path, nats_server.url, "alpha", "agent")
    async with serving(tmp_path, "resend", nats_server.url, **env) as server, http_client(key) as hc:
        s = await Session(hc, server.url).open()
        await s.ok(1, "warp_registry_register", agentType="worker", capabilities=["python"])

        # channels: the same request twice is one message and the same answer (id, sequence, timestamp)
        first = await s.send(10, "warp_channels_send", channel="roadmap", message="ship it")
        again = await s.send(10, "warp_channels_send", channel="roadmap", message="ship it")
        assert not first.get("isError") and again == first
        assert await history(s, 11, "roadmap") == ["ship it"]

        # a new request id with the same arguments is a new message
        other = await s.ok(12, "warp_channels_send", channel="roadmap", message="ship it")
        assert other["id"] != first["structuredContent"]["id"]
        assert await history(s, 13, "roadmap") == ["ship it", "ship it"]

        # work: one item however often the broadcast is resent; a string request id is a key of its own
        job = {"taskId": "t1", "description": "build", "requiredCapability": "python"}
        queued = await s.send("b-1", "warp_work_broadcast", **job)
        assert not queued.get("isError") and await s.send("b-1", "warp_work_broadcast", **job) == queued
        item = queued["structuredContent"]["workItemId"]
        status = await s.ok(19, "warp_work_queue_status", capability="python")
        assert status["queues"][0]["pending"] == 1, status
        claimed = await s.send(20, "warp_work_claim", capability="python", timeout=100)
        assert claimed["structuredContent"]["workItem"]["id"] == item
        # the resent claim answers the same item and takes no more work
        await s.ok(21, "warp_work_broadcast", taskId="t2", description="later", requiredCapability="python")
        assert await s.send(20, "warp_work_claim", capability="python", timeout=100) == claimed
        status = await s.ok(22, "warp_work_queue_status", capability="python")
        assert status["queues"][0]["pending"] == 1, status

        # completion twice: the resend answers the first "completed", not a conflict
        done = await s.send(30, "warp_work_complete", workItemId=item, result={"ok": True})
        assert (
            not done.get("isError")
            and await s.send(30, "warp_work_complete", workItemId=item, result={"ok": True}) == done
        )
        late = await s.send(31, "warp_work_complete", workItemId=item, result={"ok": True})  # a new request: judged
        assert late["isError"] and late["_meta"]["io.nats-mcp/error"]["code"] in ("conflict", "forbidden"), late

        # the same id reused for another call is refused and runs nothing
        reused = await s.send(10, "warp_channels_send", channel="roadmap", message="something else")
        assert reused["isError"] and reused["_meta"]["io.nats-mcp/error"]["code"] == "invalid_argument"
        assert await history(s, 14, "roadmap") == ["ship it", "ship it"]

        # another session of the same credential reusing request id 10 is another call
        t = await Session(hc, server.url).open()
        fresh = await t.ok(10, "warp_channels_send", channel="roadmap", message="ship it")
        assert fresh["id"] != first["structuredContent"]["id"]
        assert len(await history(t, 11, "roadmap")) == 3


async def test_another_principal_cannot_reach_a_sessions_outcome(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {"NATS_MCP_NAMESPACE": NS, "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    alpha, _ = await api_key(tmp_path, nats_server.url, "alpha", "agent")
    beta, _ = await api_key(tmp_path, nats_server.url, "beta", "agent")
    async with (
        serving(tmp_path, "resend", nats_server.url, **env) as server,
        http_client(alpha) as ha,
        http_client(beta) as hb,
    ):
        a = await Session(ha, server.url).open()
        await a.ok(4, "warp_registry_register", agentType="worker")
        sent = await a.ok(5, "warp_channels_send", channel="roadmap", message="alpha's")
        # beta presents alpha's session id and the same request id: the transport refuses the session outright
        foreign = await hb.post(
            server.url, json=call(5, "warp_channels_send", channel="roadmap", message="alpha's"), headers=a.headers
        )
        assert foreign.status_code in (403, 404), foreign.text
        assert sent["id"] not in foreign.text
        assert await history(a, 6, "roadmap") == ["alpha's"]


async def test_a_refused_call_records_nothing_and_its_resend_is_judged_again(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    env = {
        "NATS_MCP_NAMESPACE": NS,
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_RATE_PER_S": "2",
        "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_BURST": "3",
    }
    key, _ = await api_key(tmp_path, nats_server.url, "alpha", "agent")
    async with (
        serving(tmp_path, "resend", nats_server.url, **env) as server,
        http_client(key) as hc,
        connected(tmp_path, nats_server.url) as conn,
    ):
        s = await Session(hc, server.url).open()
        await s.ok(1, "warp_registry_register", agentType="worker")  # idempotent: takes no record
        sent = [await s.send(i, "warp_channels_send", channel="roadmap", message=f"m{i}") for i in (2, 3, 4)]
        assert [code(r) for r in sent][:2] == [None, None] and code(sent[2]) == "rate_limited", sent
        calls = await conn.jetstream.key_value(Layout(NS).calls_bucket)
        assert len(await calls.keys()) == 2  # requests 2 and 3; the refused 4 left nothing

        # the resend of the refused request is judged again: once admitted it runs, once
        async def admitted() -> dict[str, Any] | None:
            result = await s.send(4, "warp_channels_send", channel="roadmap", message="m4")
            return None if code(result) == "rate_limited" else result

        ran = await wait_for(admitted, 30, interval=0.2, message="the resend was never admitted")
        assert code(ran) is None and ran["structuredContent"]["sequence"] == 3
        assert len(await calls.keys()) == 3

        async def read() -> list[str] | None:
            page = await s.send(5, "warp_channels_read", channel="roadmap")
            return (
                None if code(page) == "rate_limited" else [m["message"] for m in page["structuredContent"]["messages"]]
            )

        assert await wait_for(read, 30, interval=0.2) == ["m2", "m3", "m4"]


async def test_a_call_cut_mid_way_and_resent_runs_once(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {"NATS_MCP_NAMESPACE": NS, "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    key, _ = await api_key(tmp_path, nats_server.url, "alpha", "agent")
    async with serving(tmp_path, "resend", nats_server.url, **env) as server, http_client(key) as hc:
        s = await Session(hc, server.url).open()
        await s.ok(1, "warp_registry_register", agentType="worker", capabilities=["python"])
        waiting = call(2, "warp_work_claim", capability="python", timeout=20000)
        # the claim waits for work; the client's connection drops after the stream opened (the call goes on)
        async with hc.stream("POST", server.url, json=waiting, headers=s.headers) as cut:
            assert cut.status_code == 200
            async for line in cut.aiter_lines():
                if line.startswith("data:"):
                    break
        queued = await s.ok(3, "warp_work_broadcast", taskId="t", description="d", requiredCapability="python")
        # the resend waits for the first attempt and answers its outcome: the item, claimed once
        resent = await s.send(2, "warp_work_claim", capability="python", timeout=20000)
        assert resent["structuredContent"]["workItem"]["id"] == queued["workItemId"], resent
        status = await s.ok(4, "warp_work_queue_status", capability="python")
        assert (status["queues"][0]["pending"], status["queues"][0]["inFlight"]) == (0, 1), status


async def test_a_resend_after_the_first_process_died_mid_call_stores_nothing_twice(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    env = {"NATS_MCP_NAMESPACE": NS, "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    key, _ = await api_key(tmp_path, nats_server.url, "alpha", "agent")
    async with (
        serving(tmp_path, "resend", nats_server.url, **env) as server,
        http_client(key) as hc,
        connected(tmp_path, nats_server.url) as conn,
    ):
        s = await Session(hc, server.url).open()
        await s.ok(1, "warp_registry_register", agentType="worker")
        first = await s.ok(2, "warp_channels_send", channel="roadmap", message="once")

        # what a process that died after its publish and before recording the outcome leaves: "running", its lease
        # lapsed (the message itself is stored, under the id derived from the call's key)
        calls = await conn.jetstream.key_value(Layout(NS).calls_bucket)
        [name] = await calls.keys()
        entry = await calls.get(name)
        done = CallRecord.decode(entry.value)
        assert done is not None and done.state == "done"
        started = time.time() - 120
        crashed = replace(done, state="running", owner="dead-process", started=started, lease_until=started + 30)
        await calls.update(name, replace(crashed, outcome=None).encode(), last=entry.revision)

        # the resend runs the call again: JetStream drops its publish and answers the first message's sequence
        again = await s.ok(2, "warp_channels_send", channel="roadmap", message="once")
        assert (again["id"], again["sequence"]) == (first["id"], first["sequence"])
        page = await s.ok(3, "warp_channels_read", channel="roadmap")
        assert [m["message"] for m in page["messages"]] == ["once"]
        retaken = CallRecord.decode((await calls.get(name)).value)
        assert retaken is not None and retaken.state == "done" and retaken.owner != "dead-process"
