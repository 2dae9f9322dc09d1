"""Boundary of warp_work_get, warp_work_cancel and dependsOn as agents meet them: one scenario over stdio (two serve
processes) and one over streamable HTTP (one serve process, API keys, a policy with a narrower role)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mcp import Client

from tests.support.http_server import api_key, mcp_client, serving
from tests.support.natsserver import NatsServer
from tests.support.stdio import agent, err, ok
from tests.support.work_tools import CAP, broadcast, claim, register

pytestmark = pytest.mark.slow

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
POLICY = """
version: 1
roles:
  agent:
    tools: ["*"]
    namespaces: ["*"]
    channels: {read: ["*"], send: ["*"]}
    capabilities: {broadcast: ["*"], claim: ["*"]}
  other:
    tools: ["*"]
    namespaces: ["*"]
    capabilities: {broadcast: ["other"], claim: ["other"]}
  ops:
    tools: ["*"]
    namespaces: ["*"]
    admin: [dlq]
groups: {}
"""


async def scenario(boss: Client, worker: Client) -> None:
    """Submit a, b after a; the worker runs them; the boss follows and cancels. Many checks, one pass."""
    await register(boss)
    worker_guid = await register(worker, CAP)
    a = await broadcast(boss, "a")
    queued = await ok(
        boss, "warp_work_broadcast", taskId="b", description="do b", requiredCapability=CAP, dependsOn=[a]
    )
    b = queued["workItemId"]
    assert queued["status"] == "blocked"
    assert (await ok(boss, "warp_work_get", workItemId=b))["status"] == "blocked"
    bad = {"taskId": "x", "description": "x", "requiredCapability": CAP, "dependsOn": [UNKNOWN_ID]}
    assert await err(boss, "warp_work_broadcast", **bad) == "not_found"
    assert await err(boss, "warp_work_get", workItemId=UNKNOWN_ID) == "not_found"

    first = await claim(worker, timeout=2000)
    assert first is not None and first["id"] == a  # b is blocked: not claimable
    got = await ok(boss, "warp_work_get", workItemId=a)
    assert (got["status"], got["claimer"], got["attempts"]) == ("claimed", worker_guid, 1)

    # The boss waits for a's end while the worker completes it with a result.
    waiting = asyncio.create_task(ok(boss, "warp_work_get", workItemId=a, waitMs=20_000))
    await ok(worker, "warp_work_complete", workItemId=a, result={"lines": 3})
    done = await waiting
    assert (done["status"], done["result"]) == ("completed", {"lines": 3})

    # b is released; only its submitter may cancel it; the claimer learns it on its next call.
    second = await claim(worker, timeout=2000)
    assert second is not None and second["id"] == b and second["dependsOn"] == [a]
    assert await err(worker, "warp_work_cancel", workItemId=b) == "forbidden"
    assert (await ok(boss, "warp_work_cancel", workItemId=b))["status"] == "cancel_requested"
    assert await err(worker, "warp_work_complete", workItemId=b, result="late") == "cancelled"
    assert (await ok(boss, "warp_work_get", workItemId=b))["status"] == "cancelled"
    assert (await ok(boss, "warp_work_cancel", workItemId=b))["status"] == "cancelled"


async def test_results_dependencies_and_cancel_over_stdio(tmp_path: Path, nats_server: NatsServer) -> None:
    async with (
        agent(tmp_path, nats_server, "boss", "team-r1") as boss,
        agent(tmp_path, nats_server, "worker", "team-r1") as worker,
    ):
        await scenario(boss, worker)


async def test_results_dependencies_and_cancel_over_http(tmp_path: Path, nats_server: NatsServer) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = {"NATS_MCP_NAMESPACE": "team-r2", "NATS_MCP_SECURITY_POLICY_FILE": str(policy)}
    key, _ = await api_key(tmp_path, nats_server.url, "alpha", "agent")
    narrow, _ = await api_key(tmp_path, nats_server.url, "beta", "other")
    admin, _ = await api_key(tmp_path, nats_server.url, "gamma", "ops")
    async with (
        serving(tmp_path, "results", nats_server.url, **env) as server,
        mcp_client(server.url, key, agent="boss") as boss,
        mcp_client(server.url, key, agent="worker") as worker,
        mcp_client(server.url, narrow) as outsider,
        mcp_client(server.url, admin) as operator,
    ):
        await scenario(boss, worker)
        # A role without a grant for the capability is refused, and does not see another's item by id.
        mine = await broadcast(boss, "c")
        assert await err(outsider, "warp_work_get", workItemId=mine, capability=CAP) == "forbidden"
        assert await err(outsider, "warp_work_get", workItemId=mine) == "not_found"
        assert await err(outsider, "warp_work_cancel", workItemId=mine) == "forbidden"
        assert (await ok(boss, "warp_work_get", workItemId=mine))["status"] == "pending"
        # Only an admin (policy `admin: [dlq]`) cancels another's item, by the force-cancel tool.
        assert await err(boss, "warp_work_force_cancel", workItemId=mine) == "forbidden"
        assert await err(outsider, "warp_work_force_cancel", workItemId=mine) == "forbidden"
        assert (await ok(operator, "warp_work_force_cancel", workItemId=mine))["status"] == "cancelled"
        assert (await ok(boss, "warp_work_get", workItemId=mine))["status"] == "cancelled"
