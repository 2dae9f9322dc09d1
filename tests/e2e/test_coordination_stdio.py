"""The coordination scenario over stdio with the real SDK client and nats-server: three agents, two namespaces."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from nats_mcp.api.tools.base import ERROR_META
from tests.support.natsserver import NatsServer, wait_for
from tests.support.stdio import TOOLS, agent, err, ok

READ_WAITS_SHARE_1 = {
    "NATS_MCP_SECURITY_POOLS_READ_WAITS_TOTAL": "10",
    "NATS_MCP_SECURITY_POOLS_READ_WAITS_PER_PRINCIPAL": "1",
}


@pytest.mark.slow
async def test_two_agents_one_namespace_and_a_third_elsewhere(tmp_path: Path, nats_server: NatsServer) -> None:
    async with (
        agent(tmp_path, nats_server, "a", "team-a") as a,
        agent(tmp_path, nats_server, "b", "team-a", mode="legacy", **READ_WAITS_SHARE_1) as b,
        agent(tmp_path, nats_server, "c", "team-c") as c,
    ):
        assert {t.name for t in (await a.list_tools()).tools} == TOOLS
        assert a.protocol_version == "2026-07-28"
        assert b.protocol_version == "2025-11-25"

        # identity and registration
        await ok(a, "warp_handle_set", handle="alice")
        ra = (await ok(a, "warp_registry_register", agentType="developer", capabilities=["python", "review"]))["agent"]
        rb = (await ok(b, "warp_registry_register", agentType="code_reviewer"))["agent"]
        rc = (await ok(c, "warp_registry_register", agentType="ops", scope="public"))["agent"]
        assert ra["handle"] == "alice"
        assert rb["handle"] == "code-reviewer"  # Warp's automatic handle
        assert len({ra["guid"], rb["guid"], rc["guid"]}) == 3
        assert (await ok(b, "warp_handle_get"))["agentGuid"] == rb["guid"]

        # discover and get_info honour scopes: team = same namespace; public = everyone
        seen_by_a = {x["guid"] for x in (await ok(a, "warp_registry_discover"))["agents"]}
        assert seen_by_a == {ra["guid"], rb["guid"], rc["guid"]}
        seen_by_c = {x["guid"] for x in (await ok(c, "warp_registry_discover"))["agents"]}
        assert seen_by_c == {rc["guid"]}
        info = (await ok(a, "warp_registry_get_info", guid=rb["guid"]))["agent"]
        assert info["agentType"] == "code_reviewer"
        assert await err(c, "warp_registry_get_info", guid=ra["guid"]) == "not_found"
        python_devs = (await ok(b, "warp_registry_discover", capability="python"))["agents"]
        assert [x["guid"] for x in python_devs] == [ra["guid"]]

        # channels: 120 messages read back in pages of 50, no repeat, nothing missing
        for i in range(120):
            await ok(a, "warp_channels_send", channel="roadmap", message=f"m{i:03d}")
        seen: list[str] = []
        cursor = None
        sizes = []
        while True:
            args: dict[str, Any] = {"channel": "roadmap", "limit": 50}
            if cursor:
                args["cursor"] = cursor
            page = await ok(b, "warp_channels_read", **args)
            sizes.append(len(page["messages"]))
            seen = [m["message"] for m in page["messages"]] + seen
            assert all(m["senderGuid"] == ra["guid"] and m["handle"] == "alice" for m in page["messages"])
            cursor = page["nextCursor"]
            if not page["hasMore"]:
                break
        assert sizes == [50, 50, 20]
        assert seen == [f"m{i:03d}" for i in range(120)]
        assert (await ok(c, "warp_channels_read", channel="roadmap"))["messages"] == []  # other namespace

        # direct messages: delivered, read once, filters leave the rest
        sent = await ok(a, "warp_messages_send_direct", recipientGuid=rb["guid"], message="hello B")
        assert sent["recipientHandle"] == "code-reviewer"
        first = (await ok(b, "warp_messages_read_direct"))["messages"]
        assert [(m["content"], m["senderGuid"], m["senderHandle"]) for m in first] == [("hello B", ra["guid"], "alice")]
        assert (await ok(b, "warp_messages_read_direct"))["messages"] == []
        await ok(a, "warp_messages_send_direct", recipientGuid=rb["guid"], message="plain")
        await ok(a, "warp_messages_send_direct", recipientGuid=rb["guid"], message="help!", messageType="help-request")
        helped = (await ok(b, "warp_messages_read_direct", messageType="help-request"))["messages"]
        assert [m["content"] for m in helped] == ["help!"]
        rest = (await ok(b, "warp_messages_read_direct"))["messages"]
        assert [m["content"] for m in rest] == ["plain"]
        # C (public, other namespace) can be written to; C cannot see A (team), so cannot write to A
        await ok(a, "warp_messages_send_direct", recipientGuid=rc["guid"], message="to the ops team")
        assert [m["content"] for m in (await ok(c, "warp_messages_read_direct"))["messages"]] == ["to the ops team"]
        assert await err(c, "warp_messages_send_direct", recipientGuid=ra["guid"], message="x") == "not_found"

        # asking a teammate: A asks in a new thread; B waits for it and answers in it; A's waiting read, filtered to
        # the thread, returns the answer; other mail stays
        asked = await ok(a, "warp_messages_send_direct", recipientGuid=rb["guid"], message="is the build green?")
        thread = asked["threadId"]
        await ok(a, "warp_messages_send_direct", recipientGuid=rb["guid"], message="other topic")
        [question] = (await ok(b, "warp_messages_read_direct", threadId=thread, waitMs=10_000))["messages"]
        assert (question["content"], question["threadId"], question["inReplyTo"]) == (
            "is the build green?",
            thread,
            None,
        )
        waiting = asyncio.create_task(ok(a, "warp_messages_read_direct", threadId=thread, waitMs=30_000))
        reply = {"threadId": thread, "inReplyTo": question["id"]}
        assert (await ok(b, "warp_messages_send_direct", recipientGuid=ra["guid"], message="yes", **reply))[
            "threadId"
        ] == thread
        [answer] = (await asyncio.wait_for(waiting, 30))["messages"]
        assert (answer["content"], answer["senderGuid"], answer["threadId"], answer["inReplyTo"]) == (
            "yes",
            rb["guid"],
            thread,
            question["id"],
        )
        assert [m["content"] for m in (await ok(b, "warp_messages_read_direct"))["messages"]] == ["other topic"]

        # a waiting read is cancellable: notifications/cancelled ends it and gives back its share (B's share is 1)
        after = {"channel": "roadmap", "afterSequence": 120}
        held: list[asyncio.Task[types.CallToolResult]] = []

        async def share_held() -> bool:
            if not held or held[-1].done():  # (again, if a probe held the share when it came)
                held.append(asyncio.create_task(b.call_tool("warp_channels_read", {**after, "waitMs": 60_000})))
                return False  # probe on the next round: a probe sent now can reach the server first and win the share
            probe = await b.call_tool("warp_channels_read", {**after, "waitMs": 1})  # waits 1 ms if admitted
            return bool(probe.is_error) and (probe.meta or {})[ERROR_META]["code"] == "limit_exceeded"

        await wait_for(share_held, 10, message="the waiting read did not hold B's share")
        held[-1].cancel()  # the SDK client sends notifications/cancelled for an abandoned request
        with contextlib.suppress(asyncio.CancelledError):
            await held[-1]

        async def share_back() -> bool:
            return not (await b.call_tool("warp_channels_read", {**after, "waitMs": 1})).is_error

        await wait_for(share_back, 10, message="the cancelled wait kept its share")

        # bad input: the spec's codes, and the server keeps serving
        assert await err(a, "warp_channels_read", channel="roadmap", waitMs=1000) == "invalid_argument"  # no afterSeq
        assert await err(a, "warp_messages_read_direct", waitMs=60_001) == "invalid_argument"
        bad_thread = {"recipientGuid": rb["guid"], "message": "x", "threadId": "not-a-uuid"}
        assert await err(a, "warp_messages_send_direct", **bad_thread) == "invalid_name"
        for bad in ("road.map", "a.>", "Roadmap", "road map", "*"):
            assert await err(a, "warp_channels_send", channel=bad, message="x") == "invalid_name", bad
        assert await err(a, "warp_handle_set", handle="Bad Handle") == "invalid_name"
        assert await err(a, "warp_registry_register", agentType="dev", capabilities=["ok", "no.dots"]) == "invalid_name"
        assert await err(a, "warp_channels_send", channel="roadmap", message="x" * (64 * 1024 + 1)) == "limit_exceeded"
        assert await err(a, "warp_channels_send", channel="nope", message="x") == "not_found"
        assert await err(a, "warp_channels_read", channel="roadmap", limit=0) == "invalid_argument"
        assert await err(a, "warp_channels_read", channel="roadmap", cursor="garbage!") == "invalid_cursor"
        assert await err(a, "warp_registry_get_info", guid="not-a-guid") == "invalid_name"
        assert await err(a, "warp_registry_update_presence", currentTaskCount=-1) == "invalid_argument"
        with pytest.raises(MCPError) as unknown:  # not a tool's failure: a protocol error (-32602)
            await a.call_tool("warp_no_such_tool", {})
        assert unknown.value.code == types.INVALID_PARAMS
        assert (await ok(a, "warp_handle_get"))["handle"] == "alice"


@pytest.mark.slow
async def test_presence_offline_on_shutdown_and_guid_back_on_restart(tmp_path: Path, nats_server: NatsServer) -> None:
    async with agent(tmp_path, nats_server, "a", "team-p") as a:
        guid_a = (await ok(a, "warp_registry_register", agentType="watcher"))["agent"]["guid"]
        async with agent(tmp_path, nats_server, "b", "team-p") as b:
            guid_b = (await ok(b, "warp_registry_register", agentType="worker"))["agent"]["guid"]
            assert guid_b != guid_a

        # B's stdin closed: it marked itself offline on the way out
        async def b_offline() -> bool:
            agents = (await ok(a, "warp_registry_discover", includeOffline=True))["agents"]
            return any(x["guid"] == guid_b and x["status"] == "offline" for x in agents)

        await wait_for(b_offline, 15, message="B was not marked offline on shutdown")
        online = {x["guid"] for x in (await ok(a, "warp_registry_discover"))["agents"]}
        assert guid_b not in online
        async with agent(tmp_path, nats_server, "b", "team-p") as b_again:
            assert (await ok(b_again, "warp_handle_get"))["agentGuid"] == guid_b


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_same_project_twice_gets_two_identities(tmp_path: Path, nats_server: NatsServer) -> None:
    async with (
        agent(tmp_path, nats_server, "same", "team-s") as one,
        agent(tmp_path, nats_server, "same", "team-s") as two,
    ):
        g1 = (await ok(one, "warp_handle_get"))["agentGuid"]
        g2 = (await ok(two, "warp_handle_get"))["agentGuid"]
        assert g1 != g2


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_tools_answer_nats_unavailable_while_nats_is_down(
    tmp_path: Path, nats_server: NatsServer, mode: str
) -> None:
    url = nats_server.url
    nats_server.stop()
    async with agent(tmp_path, nats_server, "down", "team-d", mode=mode, NATS_URL=url) as a:
        assert await err(a, "warp_handle_get") == "nats_unavailable"
        assert len((await a.list_tools()).tools) == len(TOOLS)
        nats_server.restart()

        async def works() -> bool:
            result = await a.call_tool("warp_handle_get", {})
            return not result.is_error

        await wait_for(works, 20, message="tools did not recover after NATS came back")
