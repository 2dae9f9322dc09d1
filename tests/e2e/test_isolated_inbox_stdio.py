"""Boundary of an isolated inbox on real `nats-mcp serve` stdio agents: each runs as its own NATS user with exactly
the agent permissions `nats-permissions --agent` prints (isolated by default) and reads its DMs through its own
consumer; the other agent's inbox is refused by nats-server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from nats_mcp.bus.layout import Layout
from tests.support.natsperms import NS, USERS, PermsNatsServer, Raw, provision
from tests.support.natsserver import wait_for
from tests.support.stdio import agent, ok

A = "a1" * 16
C = "c3" * 16


def as_user(server: PermsNatsServer, user: str, guid: str) -> dict[str, str]:
    """What an operator sets for one stdio agent: its NATS user, its inbox prefix, isolated reads, its GUID."""
    perms = USERS[user].perms
    assert perms.isolate_inbox and perms.agent == guid
    return {
        "NATS_URL": server.url_for(user),
        "NATS_MCP_NATS_INBOX_PREFIX": perms.inbox_prefix,
        "NATS_MCP_NATS_ISOLATE_INBOX": "true",
        "LOOMINAL_AGENT_ID": guid,
    }


@pytest.fixture
def perms_server(tmp_path: Path) -> PermsNatsServer:
    server = PermsNatsServer(tmp_path / "nats-perms")
    server.start()
    return server


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_stdio_agents_read_their_own_inbox_under_isolated_permissions(
    tmp_path: Path, perms_server: PermsNatsServer
) -> None:
    server = perms_server
    try:
        await provision(tmp_path, server)
        async with (
            agent(tmp_path, server, "alice", NS, **as_user(server, "agent-a", A)) as alice,
            agent(tmp_path, server, "carol", NS, **as_user(server, "agent-c", C)) as carol,
        ):
            await ok(alice, "warp_registry_register", agentType="tester")
            await ok(carol, "warp_registry_register", agentType="tester")
            await wait_for(lambda: ok(alice, "warp_registry_get_info", guid=C), 10, ignore=(AssertionError,))
            sent = await ok(alice, "warp_messages_send_direct", recipientGuid=C, message="hi carol")
            await ok(carol, "warp_messages_send_direct", recipientGuid=A, message="alice's secret")
            got = await ok(carol, "warp_messages_read_direct")
            assert [m["id"] for m in got["messages"]] == [sent["id"]]
            assert got["messages"][0]["senderGuid"] == A
            assert (await ok(carol, "warp_messages_read_direct"))["messages"] == []

            # a waiting read under these permissions: it listens on carol's own inbox subject (allowed: a refused
            # subscription would be a violation below, which names no stream) and returns the DM sent meanwhile
            waiting = asyncio.create_task(ok(carol, "warp_messages_read_direct", waitMs=20_000))
            later = await ok(alice, "warp_messages_send_direct", recipientGuid=C, message="are you there?")
            assert [m["id"] for m in (await asyncio.wait_for(waiting, 30))["messages"]] == [later["id"]]

            # the attack, with carol's NATS credentials: alice's inbox through the stream-wide API
            team = Layout(NS)
            async with Raw.of(server, "agent-c") as raw:
                await raw.refused_request(
                    f"$JS.API.DIRECT.GET.{team.inbox_stream}", {"seq": 1, "next_by_subj": team.inbox_subject(A)}
                )
                await raw.refused_request(f"$JS.API.STREAM.MSG.DELETE.{team.inbox_stream}", {"seq": 1})
            mine = await ok(alice, "warp_messages_read_direct")
            assert [m["content"] for m in mine["messages"]] == ["alice's secret"]  # still there, read once
        refused = server.violations()
        assert refused and all('user:agent-c"' in v and team.inbox_stream in v for v in refused), json.dumps(refused)
    finally:
        server.close()
