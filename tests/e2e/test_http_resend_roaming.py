"""Boundary of resend deduplication across gateway processes: a session's resend served by another process.

Needs sessions that roam between processes (the HTTP transport's sessions in NATS, issue 21): without them the
second process answers 404 to the session.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from nats_mcp.bus.layout import Layout
from nats_mcp.coord.replay import CallRecord
from tests.support.env import connected
from tests.support.http_server import api_key, http_client, policy_file, serving
from tests.support.natsserver import NatsServer, wait_for
from tests.support.resend import Session, code

pytestmark = pytest.mark.slow
# Sessions roam between processes since main's roaming sessions (transports/http/roaming.py); on a branch without
# them the second process answers 404, so this module runs only where they exist (remove this line once merged).

NS = "team-roam"


async def test_a_resend_to_another_process_runs_nothing_twice(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {"NATS_MCP_NAMESPACE": NS, "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    key, _ = await api_key(tmp_path, nats_server.url, "alpha", "agent")
    async with (
        serving(tmp_path, "roam-a", nats_server.url, **env) as a,
        serving(tmp_path, "roam-b", nats_server.url, **env) as b,
        http_client(key) as hc,
    ):
        on_a = await Session(hc, a.url).open()
        on_b = on_a.at(b.url)  # the same session, its requests sent to process B
        await on_a.ok(1, "warp_registry_register", agentType="worker", capabilities=["python"])

        first = await on_a.send(2, "warp_channels_send", channel="roadmap", message="once")
        assert (
            not first.get("isError")
            and await on_b.send(2, "warp_channels_send", channel="roadmap", message="once") == first
        )
        job = {"taskId": "t", "description": "d", "requiredCapability": "python"}
        queued = await on_b.send(3, "warp_work_broadcast", **job)
        assert await on_a.send(3, "warp_work_broadcast", **job) == queued
        page = await on_b.ok(4, "warp_channels_read", channel="roadmap")
        assert [m["message"] for m in page["messages"]] == ["once"]
        status = await on_a.ok(5, "warp_work_queue_status", capability="python")
        assert status["queues"][0]["pending"] == 1, status


async def test_a_resend_after_its_process_died_mid_call_runs_on_another(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    env = {"NATS_MCP_NAMESPACE": NS, "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    key, _ = await api_key(tmp_path, nats_server.url, "alpha", "agent")
    async with (
        serving(tmp_path, "roam-a", nats_server.url, **env) as a,
        serving(tmp_path, "roam-b", nats_server.url, **env) as b,
        http_client(key) as hc,
        connected(tmp_path, nats_server.url) as conn,
    ):
        on_a = await Session(hc, a.url).open()
        on_b = on_a.at(b.url)
        await on_a.ok(1, "warp_registry_register", agentType="worker", capabilities=["python"])

        async def running() -> CallRecord | None:
            kv = await conn.jetstream.key_value(Layout(NS).calls_bucket)
            for name in await kv.keys():
                found = CallRecord.decode((await kv.get(name)).value)
                if found is not None and found.state == "running":
                    return found
            return None

        waiting = {"capability": "python", "timeout": 30000}
        # a claim waits for work on A; A dies while it waits (its record stays "running", its lease unrenewed)
        async with hc.stream("POST", a.url, json=on_a.call(2, "warp_work_claim", **waiting), headers=on_a.headers) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    break
            dead = await wait_for(running, 30, message="A never recorded the call", ignore=(Exception,))
            await a.stop(signal.SIGKILL)
        queued = await on_b.ok(3, "warp_work_broadcast", taskId="t", description="d", requiredCapability="python")

        # B answers "still running, retry" while A's lease lasts, then takes the call over and claims the item
        async def taken_over() -> dict[str, Any] | None:
            result = await on_b.send(2, "warp_work_claim", **waiting)
            if code(result) == "conflict":
                assert result["_meta"]["io.nats-mcp/error"]["retryAfterS"] > 0
                return None
            return result

        claimed = await wait_for(taken_over, 90, interval=0.5, message="B never took the dead process's call over")
        assert time.time() >= dead.lease_until  # not before A's lease ran out
        assert claimed["structuredContent"]["workItem"]["id"] == queued["workItemId"], claimed
        # and the taken-over outcome is the one every later resend gets
        assert await on_b.send(2, "warp_work_claim", **waiting) == claimed
