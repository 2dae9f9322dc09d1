"""Boundary of the guard where an outside attack found holes (issue 19): listen streams, pooled resources, queue reads,
unknown tool names and agent names, each tried on real `nats-mcp serve` processes (HTTP, gRPC), refused, audited."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import grpc
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from nats_mcp.api.resources import INBOX_URI, channel_uri
from nats_mcp.api.tools.base import ERROR_META
from tests.support.audit import audited
from tests.support.grpc_server import Pki, call_status, listening, next_frame, target, tool_call
from tests.support.grpc_server import serving as grpc_serving
from tests.support.http_server import api_key, mcp_client, serving
from tests.support.natsserver import NatsServer, wait_for
from tests.support.stdio import err, ok
from tests.support.work_tools import broadcast, claim, dlq, queues, register

# resources/subscribe is the 2025-11-25 way, used here on purpose
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

SECRET = {"token": "the corporate context"}
ROADMAP, ERRORS, PARALLEL = channel_uri("roadmap"), channel_uri("errors"), channel_uri("parallel-work")
POLICY = """
version: 1
roles:
  agent:
    tools: ["*"]
    namespaces: ["*"]
    channels: {read: ["*"], send: ["*"]}
    capabilities: {broadcast: ["*"], claim: ["*"], boundaries: ["*"]}
  py:
    tools: ["*"]
    namespaces: ["*"]
    channels: {read: ["roadmap", "parallel-work"], send: ["roadmap"]}
    capabilities: {broadcast: ["python"], claim: ["python"]}
  nobody: {}
"""


def audit_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    policy, trail = tmp_path / "policy.yaml", tmp_path / "audit.jsonl"
    policy.write_text(POLICY)
    return trail, {"NATS_MCP_SECURITY_POLICY_FILE": str(policy), "NATS_MCP_SECURITY_AUDIT_FILE": str(trail)}


def refusal(caught: pytest.ExceptionInfo[MCPError]) -> str:
    """The contract's code of a refused resource request (JSON-RPC INVALID_PARAMS, the code in data)."""
    assert caught.value.code == types.INVALID_PARAMS, caught.value
    code: str = caught.value.data["code"]
    return code


@contextlib.asynccontextmanager
async def listen(client: Client, *uris: str) -> AsyncIterator[None]:
    async with client.listen(resource_subscriptions=list(uris)) as sub:
        assert set(sub.honored.resource_subscriptions or ()) == set(uris)
        yield


# ---- findings 1 and 2 over HTTP: listen goes through the guard; pools have per-principal shares ---------------------


async def test_listen_and_subscribe_are_authorized_audited_and_shared_per_principal_over_http(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    trail, env = audit_env(tmp_path)
    url = nats_server.url
    alice, alice_id = await api_key(tmp_path, url, "alice", "py")
    bob, _ = await api_key(tmp_path, url, "bob", "py")
    ghost, ghost_id = await api_key(tmp_path, url, "ghost", "nobody")
    env |= {
        "NATS_MCP_NAMESPACE": "team-listen",
        "NATS_MCP_SECURITY_POOLS_LISTEN_TOTAL": "3",
        "NATS_MCP_SECURITY_POOLS_LISTEN_PER_PRINCIPAL": "2",
        "NATS_MCP_SECURITY_POOLS_WATCHES_TOTAL": "100",
        "NATS_MCP_SECURITY_POOLS_WATCHES_PER_PRINCIPAL": "2",
    }
    async with serving(tmp_path, "shares", url, **env) as server:
        async with mcp_client(server.url, alice) as a, mcp_client(server.url, ghost) as g:
            assert a.protocol_version == "2026-07-28"
            # the attack: listen to a channel the role may not read, and as a principal granted nothing at all
            with pytest.raises(MCPError) as caught:
                async with listen(a, ROADMAP, ERRORS):
                    pass
            assert refusal(caught) == "forbidden" and "channel errors" in caught.value.message
            await audited(
                trail,
                "the denied listen",
                kind="denied",
                tool="channels_read",
                reason="policy_denied",
                transport="http",
                key_id=alice_id,
            )
            for uris in ([ROADMAP], [INBOX_URI]):
                with pytest.raises(MCPError) as caught:
                    async with listen(g, *uris):
                        pass
                assert refusal(caught) == "forbidden"
            await audited(trail, "the grantless listen", kind="denied", reason="policy_denied", key_id=ghost_id)

            # the readable channel is served, and audited as the read it amounts to
            async with listen(a, ROADMAP):
                await audited(
                    trail, "the allowed listen", kind="tool_call", tool="channels_read", outcome="ok", key_id=alice_id
                )

            # one principal holding its share (2) of listen streams is refused a third; another principal is not
            async with contextlib.AsyncExitStack() as held:
                for _ in range(2):
                    await held.enter_async_context(listen(a, ROADMAP))
                with pytest.raises(MCPError) as caught:
                    async with listen(a, ROADMAP):
                        pass
                assert refusal(caught) == "limit_exceeded" and "its share" in caught.value.message
                await audited(
                    trail,
                    "the exhausted share",
                    kind="limit_exceeded",
                    reason="listen_share_exhausted",
                    key_id=alice_id,
                )
                async with mcp_client(server.url, bob) as b, listen(b, ROADMAP):
                    pass

            # the streams ended: their slots came back
            async def again() -> bool:
                async with listen(a, ROADMAP, PARALLEL):
                    return True

            await wait_for(again, 15, ignore=(MCPError,), message="the listen slots never came back")

        # the 2025-11-25 way: subscriptions take slots of their own pool, per principal
        async with mcp_client(server.url, alice, mode="legacy") as a1, mcp_client(server.url, bob, mode="legacy") as b1:
            with pytest.raises(MCPError) as caught:
                await a1.subscribe_resource(ERRORS)
            assert refusal(caught) == "forbidden"
            await a1.subscribe_resource(ROADMAP)
            await a1.subscribe_resource(ROADMAP)  # the same URI again holds no second slot
            await a1.subscribe_resource(PARALLEL)
            with pytest.raises(MCPError) as caught:
                await a1.subscribe_resource(INBOX_URI)
            assert refusal(caught) == "limit_exceeded"
            await audited(
                trail,
                "the exhausted watch share",
                kind="limit_exceeded",
                reason="watches_share_exhausted",
                key_id=alice_id,
            )
            await b1.subscribe_resource(ROADMAP)  # bob's share is his own
            await a1.unsubscribe_resource(PARALLEL)
            await a1.subscribe_resource(INBOX_URI)  # given back on unsubscribe


# ---- finding 1 and 2 over gRPC: Listen ------------------------------------------------------------------------------


async def first_answer(frames: Any) -> dict[str, Any]:
    """The first frame of a Listen that is not a notification (its acknowledgement is one): a refusal's error."""
    with anyio.fail_after(15):
        while True:
            message: dict[str, Any] = await frames.get()
            if "id" in message:
                return message


async def test_grpc_listen_is_authorized_audited_and_shared_per_principal(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    pki = Pki.create(tmp_path / "pki")
    trail, env = audit_env(tmp_path)
    url = nats_server.url
    alice, alice_id = await api_key(tmp_path, url, "alice", "py")
    bob, _ = await api_key(tmp_path, url, "bob", "py")
    env |= {
        "NATS_MCP_NAMESPACE": "team-glisten",
        "NATS_MCP_GRPC_REQUIRE_CLIENT_CERT": "false",
        "NATS_MCP_SECURITY_POOLS_LISTEN_TOTAL": "3",
        "NATS_MCP_SECURITY_POOLS_LISTEN_PER_PRINCIPAL": "1",
    }
    async with grpc_serving(tmp_path, "glisten", url, pki.server(), **env) as srv:
        a, b = target(srv, None, alice), target(srv, None, bob)
        async with listening(a, [ERRORS]) as frames:  # a channel alice's role may not read
            answer = await first_answer(frames)
        assert answer["error"]["code"] == types.INVALID_PARAMS and answer["error"]["data"]["code"] == "forbidden"
        await audited(
            trail,
            "the denied Listen",
            kind="denied",
            tool="channels_read",
            reason="policy_denied",
            transport="grpc",
            key_id=alice_id,
        )

        async with listening(a, [ROADMAP]) as held:
            await next_frame(held, "notifications/subscriptions/acknowledged")
            async with listening(a, [ROADMAP]) as frames:  # alice's share is 1
                answer = await first_answer(frames)
            assert answer["error"]["data"]["code"] == "limit_exceeded"
            await audited(
                trail,
                "the exhausted share",
                kind="limit_exceeded",
                reason="listen_share_exhausted",
                transport="grpc",
                key_id=alice_id,
            )
            async with listening(b, [ROADMAP]) as frames:  # bob is not refused for alice's streams
                await next_frame(frames, "notifications/subscriptions/acknowledged")
            # and alice's stream still hears of changes
            code, _, received = await call_status(a, tool_call("warp_handle_set", 1, handle="alice"))
            assert code == grpc.StatusCode.OK
            code, _, received = await call_status(
                a, tool_call("warp_channels_send", 2, channel="roadmap", message="still listening")
            )
            assert code == grpc.StatusCode.OK and json.loads(received[-1])["result"]["isError"] is False
            assert (await next_frame(held, "notifications/resources/updated"))["params"]["uri"] == ROADMAP


# ---- finding 8: a role that may claim only python reads only python's queue ----------------------------------------


async def test_queue_reads_are_limited_to_the_capabilities_a_role_is_granted(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    trail, env = audit_env(tmp_path)
    url = nats_server.url
    boss, _ = await api_key(tmp_path, url, "boss", "agent")
    worker, worker_id = await api_key(tmp_path, url, "worker", "py")
    async with (
        serving(tmp_path, "queues", url, NATS_MCP_NAMESPACE="team-queues", **env) as server,
        mcp_client(server.url, boss, mode="legacy") as chief,
        mcp_client(server.url, worker) as py,
    ):
        await register(chief, "secret", "python")
        await register(py, "python")
        await broadcast(chief, "py-task", "python")
        await broadcast(chief, "secret-task", "secret", contextData={"token": "the secret's context"})
        for cap in ("python", "secret"):  # one dead letter each, with its error history
            await broadcast(chief, f"{cap}-doomed", cap, priority=9)
            item = await claim(chief, cap)
            assert item is not None and item["taskId"] == f"{cap}-doomed"
            await ok(chief, "warp_work_fail", workItemId=item["id"], reason=f"{cap} broke", recoverable=False)

        # the attack: read the other capability's pending items and dead letters
        assert await err(py, "warp_work_list", capability="secret") == "forbidden"
        assert await err(py, "warp_dlq_list", capability="secret") == "forbidden"
        assert await err(py, "warp_work_queue_status", capability="secret") == "forbidden"
        await audited(
            trail, "the refused queue read", kind="denied", tool="work_list", reason="policy_denied", key_id=worker_id
        )
        # ...and without a capability argument, only what the role may see
        assert set(await queues(py)) == {"python"}
        assert set(await queues(chief)) == {"python", "secret"}
        seen = await dlq(py)
        assert [e["workItem"]["capability"] for e in seen] == ["python"] and seen[0]["reason"] == "unrecoverable"
        page = await ok(py, "warp_dlq_list")
        assert page.get("total") is None  # a total would count the entries it may not see
        assert {e["workItem"]["capability"] for e in await dlq(chief)} == {"python", "secret"}
        # its own capability stays readable
        listed = (await ok(py, "warp_work_list", capability="python"))["items"]
        assert [i["taskId"] for i in listed] == ["py-task"]
        assert "the secret's context" not in json.dumps([await ok(py, "warp_work_queue_status"), seen])

        # Work boundaries (issue 24): py's role grants none, so a corporate python item does not exist for it.
        corp = await broadcast(chief, "corp-task", "python", priority=10, boundary="corporate", contextData=SECRET)
        offer = {"taskId": "x", "description": "x", "requiredCapability": "python", "boundary": "corporate"}
        assert await err(py, "warp_work_broadcast", **offer) == "forbidden"
        await audited(trail, "the refused boundary", kind="denied", tool="work_broadcast", key_id=worker_id)
        assert (await queues(py, "python"))["python"][0] == 1 and (await queues(chief, "python"))["python"][0] == 2
        listed = (await ok(py, "warp_work_list", capability="python"))["items"]
        assert [i["taskId"] for i in listed] == ["py-task"]
        assert await err(py, "warp_work_get", workItemId=corp) == "not_found"
        mine = await claim(py, "python")
        assert mine is not None and mine["taskId"] == "py-task" and await claim(py, "python") is None
        got = await claim(chief, "python")
        assert got is not None and (got["id"], got["boundary"]) == (corp, "corporate")
        assert (await ok(chief, "warp_work_get", workItemId=corp))["boundary"] == "corporate"


# ---- findings 10 and 11: unknown tool names and agent names do not escape the limits ------------------------------


async def code_of(client: Client, tool: str, **args: Any) -> str | None:
    """The error code of a call (None when it succeeded), whether the server answers a tool error or a JSON-RPC
    error (unknown tools: another change makes those -32602)."""
    try:
        result = await client.call_tool(tool, args)
    except MCPError as exc:
        return "rate_limited" if isinstance(exc.data, dict) and exc.data.get("code") == "rate_limited" else "error"
    if not result.is_error:
        return None
    return str((result.meta or {}).get(ERROR_META, {}).get("code"))


async def test_unknown_tools_and_agent_names_count_against_the_principal(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    trail, env = audit_env(tmp_path)
    url = nats_server.url
    prober, prober_id = await api_key(tmp_path, url, "prober", "agent")
    fleet, fleet_id = await api_key(tmp_path, url, "fleet", "agent")
    other, _ = await api_key(tmp_path, url, "other", "agent")
    env |= {
        "NATS_MCP_NAMESPACE": "team-names",
        "NATS_MCP_SECURITY_MAX_AGENTS_PER_PRINCIPAL": "4",
        "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_RATE_PER_S": "0.01",
        "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_BURST": "12",
    }
    async with serving(tmp_path, "names", url, **env) as server:
        # probing for tool names: every call is audited, and the principal's rate limit applies to them
        async with mcp_client(server.url, prober, mode="legacy") as p:
            codes = [await code_of(p, name) for name in [f"nats_probe_{i}" for i in range(14)]]
            assert "rate_limited" in codes and codes.index("rate_limited") <= 12, codes
            await audited(
                trail,
                "an unknown tool",
                kind="tool_call",
                tool="nats_probe_0",
                outcome="unknown_tool",
                key_id=prober_id,
            )
            await audited(trail, "a refused probe", kind="rate_limited", reason="rate_limited", key_id=prober_id)

        # agent names: they share the principal's rate limit, and only 4 distinct names are accepted
        async with contextlib.AsyncExitStack() as stack:
            agents = [
                await stack.enter_async_context(mcp_client(server.url, fleet, agent=f"w-{i}", mode="legacy"))
                for i in range(6)
            ]
            codes = [await code_of(c, "warp_handle_get") for c in agents]
            assert codes[:4] == [None] * 4 and codes[4:] == ["limit_exceeded"] * 2, codes
            result = await agents[5].call_tool("warp_handle_get", {})
            assert "agent names" in result.content[0].text  # type: ignore[union-attr]
            await audited(
                trail, "the refused agent name", kind="limit_exceeded", reason="too_many_agents", key_id=fleet_id
            )
            # the 4 names draw on one bucket of 12 (7 tokens spent above, refusals included), not on 4 x 12
            spent = [await code_of(agents[i % 4], "warp_handle_get") for i in range(12)]
            assert "rate_limited" in spent and spent.index("rate_limited") <= 6, spent
            # another principal is refused nothing for it
            async with mcp_client(server.url, other, agent="w-9", mode="legacy") as o:
                assert await code_of(o, "warp_handle_get") is None


# ---- also close: channel counters only of the channels a role may read ------------------------------------------


async def test_channel_status_shows_only_the_channels_a_role_may_read(tmp_path: Path, nats_server: NatsServer) -> None:
    trail, env = audit_env(tmp_path)
    url = nats_server.url
    boss, _ = await api_key(tmp_path, url, "boss", "agent")
    reader, reader_id = await api_key(tmp_path, url, "reader", "py")
    async with (
        serving(tmp_path, "chanstat", url, NATS_MCP_NAMESPACE="team-chanstat", **env) as server,
        mcp_client(server.url, boss) as chief,
        mcp_client(server.url, reader) as py,
    ):
        await register(chief)
        await ok(chief, "warp_channels_send", channel="errors", message="a secret incident")

        def counted(page: dict[str, Any]) -> dict[str, int]:
            return {c["name"]: c["messages"] for c in page["channels"]}

        # the attack: the counters of a channel the role may not read, asked by name or in the full listing
        assert await err(py, "warp_channels_status", channel="errors") == "forbidden"
        await audited(trail, "the refused status read", kind="denied", tool="channels_status", key_id=reader_id)
        assert set(counted(await ok(py, "warp_channels_status"))) == {"roadmap", "parallel-work"}
        everything = counted(await ok(chief, "warp_channels_status"))
        assert everything["errors"] == 1 and {"roadmap", "parallel-work", "errors"} <= set(everything)
