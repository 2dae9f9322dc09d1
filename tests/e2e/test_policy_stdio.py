"""The guard over stdio, end to end: a policy file hides and refuses what it does not grant, and spoofing fails."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from nats_mcp.api.resources import INBOX_URI, channel_uri
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer
from tests.support.stdio import agent, err, ok

POLICY = """
version: 1
roles:
  agent:
    tools: ["handle_*", "registry_*", "channels_*", "messages_*", "work_broadcast", "work_claim", "work_complete"]
    namespaces: ["team-p"]
    channels: {read: ["roadmap", "errors"], send: ["roadmap"]}
    capabilities: {broadcast: ["python"], claim: ["python"]}
  reader:
    tools: ["channels_list", "channels_read"]
    namespaces: ["*"]
    channels: {read: ["roadmap"]}
"""


@pytest.mark.slow
async def test_policy_hides_and_refuses_what_it_does_not_grant(tmp_path: Path, nats_server: NatsServer) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = {"NATS_MCP_SECURITY_POLICY_FILE": str(policy)}
    async with (
        agent(tmp_path, nats_server, "dev", "team-p", **env) as dev,
        agent(tmp_path, nats_server, "ro", "team-p", NATS_MCP_SECURITY_LOCAL_ROLES='["reader"]', **env) as ro,
        agent(tmp_path, nats_server, "away", "team-q", **env) as away,
    ):
        names = {t.name for t in (await dev.list_tools()).tools}
        assert "warp_work_broadcast" in names and "warp_dlq_discard" not in names and "warp_work_fail" not in names
        assert {t.name for t in (await ro.list_tools()).tools} == {"warp_channels_list", "warp_channels_read"}

        # granted
        await ok(dev, "warp_registry_register", agentType="dev", capabilities=["python", "rust"])
        await ok(dev, "warp_channels_send", channel="roadmap", message="hello")
        assert [m["message"] for m in (await ok(ro, "warp_channels_read", channel="roadmap"))["messages"]] == ["hello"]
        item = await ok(dev, "warp_work_broadcast", taskId="t", description="d", requiredCapability="python")
        claimed = (await ok(dev, "warp_work_claim", capability="python", timeout=0))["workItem"]
        assert claimed["id"] == item["workItemId"]

        # refused: a tool outside the grant (even though it exists), a channel, a capability, a namespace
        assert await err(dev, "warp_dlq_list") == "forbidden"
        assert await err(dev, "warp_work_fail", workItemId=claimed["id"], reason="x") == "forbidden"
        assert await err(dev, "warp_channels_send", channel="errors", message="x") == "forbidden"
        assert await err(dev, "warp_work_broadcast", taskId="t", description="d", requiredCapability="rust") == (
            "forbidden"
        )
        assert await err(ro, "warp_channels_send", channel="roadmap", message="x") == "forbidden"
        assert await err(ro, "warp_channels_read", channel="errors") == "forbidden"
        assert await err(away, "warp_channels_list") == "forbidden"  # team-q is not granted to the role

        # spoofing the sender through arguments is refused, nothing is written
        assert await err(dev, "warp_channels_send", channel="roadmap", message="x", handle="ceo") == "invalid_argument"
        assert await err(dev, "warp_channels_send", channel="roadmap", message="x", senderGuid="0" * 32) == (
            "invalid_argument"
        )
        messages = (await ok(ro, "warp_channels_read", channel="roadmap"))["messages"]
        assert [m["message"] for m in messages] == ["hello"]

        # resources are reads like any other: the same policy applies
        assert "hello" in (await ro.read_resource(channel_uri("roadmap"))).contents[0].text  # type: ignore[union-attr]
        for uri in (channel_uri("errors"), INBOX_URI):
            with pytest.raises(MCPError) as caught:
                await ro.read_resource(uri)
            assert caught.value.error.data == {"code": "forbidden"}
        await ok(dev, "warp_work_complete", workItemId=claimed["id"])


async def test_a_broken_policy_file_stops_the_server(tmp_path: Path, nats_server: NatsServer) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("roles: {a: {tools: ['*']}}\nprincipals: [{subject: x, roles: [nope]}]\n")
    environment = isolated_env(tmp_path, NATS_URL=nats_server.url, NATS_MCP_SECURITY_POLICY_FILE=str(policy))
    proc = await asyncio.create_subprocess_exec(
        nats_mcp_exe(),
        "serve",
        env=environment,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=os.fspath(tmp_path),
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"unknown role" in stderr and b"nope" in stderr
