"""Prompts, completions, log notifications and claim progress on real `nats-mcp serve` processes (stdio and HTTP),
with the Python SDK client: served, filtered by the policy, refused and audited when not granted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from nats_mcp.transports.grpc.client import grpc_transport
from tests.support.audit import audited
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.grpc_server import Pki, policy_file, target
from tests.support.grpc_server import serving as grpc_serving
from tests.support.http_server import api_key, http_client, mcp_client, serving
from tests.support.natsserver import NatsServer, wait_for
from tests.support.stdio import ok

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # setLevel: 2025

PROMPTS = {"join-team", "work-loop", "hand-off"}
TEMPLATE = types.ResourceTemplateReference(uri="nats-mcp://channels/{channel}")
FAST = {"NATS_MCP_NATS_RECONNECT_BACKOFF_MIN_S": "0.05", "NATS_MCP_NATS_RECONNECT_BACKOFF_MAX_S": "0.5"}
POLICY = """
version: 1
roles:
  agent:
    tools: ["*"]
    namespaces: ["*"]
    channels: {read: ["*"], send: ["*"]}
    capabilities: {broadcast: ["*"], claim: ["*"]}
  reader:
    tools: ["channels_list", "channels_read"]
    namespaces: ["*"]
    channels: {read: ["roadmap"]}
  worker:
    tools: ["handle_*", "registry_*", "channels_*", "work_claim", "work_progress", "work_complete", "work_fail"]
    namespaces: ["*"]
    channels: {read: ["roadmap"], send: ["roadmap"]}
    capabilities: {claim: ["python"]}
"""


class Inbox:
    """The log and progress notifications a client received."""

    def __init__(self) -> None:
        self.logs: list[types.LoggingMessageNotificationParams] = []

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, types.LoggingMessageNotification):
            self.logs.append(message.params)

    def events(self) -> list[str]:
        return [p.data.get("event") for p in self.logs if isinstance(p.data, dict)]


@contextlib.asynccontextmanager
async def agent(
    tmp_path: Path, server: NatsServer, name: str, mode: str = "auto", inbox: Inbox | None = None, **env: str
) -> AsyncIterator[Client]:
    project = tmp_path / name
    project.mkdir(exist_ok=True)
    settings = {"NATS_URL": server.url, "NATS_MCP_NAMESPACE": "team-pc", "MCP_PROJECT_PATH": str(project), **env}
    params = StdioServerParameters(
        command=nats_mcp_exe(), args=["serve"], env=isolated_env(tmp_path, **settings), cwd=str(project)
    )
    with (tmp_path / f"{name}.log").open("a") as errlog:
        client = Client(stdio_client(params, errlog=errlog), mode=mode, message_handler=inbox)  # type: ignore[arg-type]
        async with client:
            yield client


def policy_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    policy, trail = tmp_path / "policy.yaml", tmp_path / "audit.jsonl"
    policy.write_text(POLICY)
    return trail, {"NATS_MCP_SECURITY_POLICY_FILE": str(policy), "NATS_MCP_SECURITY_AUDIT_FILE": str(trail)}


def text_of(result: types.GetPromptResult) -> str:
    assert len(result.messages) == 1 and result.messages[0].role == "user"
    content = result.messages[0].content
    assert isinstance(content, types.TextContent)
    return content.text


async def values(
    client: Client, ref: types.PromptReference | types.ResourceTemplateReference, arg: str, value: str = ""
) -> list[str]:
    return (await client.complete(ref, {"name": arg, "value": value})).completion.values


def refused(caught: pytest.ExceptionInfo[MCPError]) -> str:
    assert caught.value.code == types.INVALID_PARAMS, caught.value
    code: str = caught.value.data["code"]
    return code


async def progress_of_a_waiting_claim(
    client: Client, capability: str, tool: str = "warp_work_claim", timeout: int = 2500
) -> list[tuple[float, float | None, str]]:
    seen: list[tuple[float, float | None, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message or ""))

    result = await client.call_tool(tool, {"capability": capability, "timeout": timeout}, progress_callback=on_progress)
    assert not result.is_error, result.content
    assert result.structured_content in ({"workItem": None}, {"workItems": []})
    return seen


async def check_the_surface(client: Client) -> None:
    """Prompts listed and rendered, completions of the template and of prompt arguments, progress of a claim."""
    caps = client.server_capabilities
    assert caps.prompts is not None and caps.completions is not None
    listed = {p.name: p for p in (await client.list_prompts()).prompts}
    assert set(listed) == PROMPTS
    args = {a.name: a for a in listed["work-loop"].arguments or []}
    assert args["capability"].required is True and args["timeout"].required is False
    assert all(a.description for p in listed.values() for a in p.arguments or [])

    text = text_of(await client.get_prompt("join-team", {"handle": "alice", "capabilities": "python,review"}))
    assert 'warp_handle_set {"handle": "alice"}' in text
    assert '"capabilities": ["python", "review"]' in text and "warp_channels_list" in text
    text = text_of(await client.get_prompt("work-loop", {"capability": "python"}))
    for tool in ("warp_work_claim", "warp_work_progress", "warp_work_complete", "warp_work_fail"):
        assert tool in text
    assert '{"capability": "python", "timeout": 30000}' in text
    with pytest.raises(MCPError) as caught:
        await client.get_prompt("work-loop", {})
    assert refused(caught) == "invalid_argument" and "capability" in caught.value.message
    with pytest.raises(MCPError) as caught:
        await client.get_prompt("no-such-prompt", {})
    assert refused(caught) == "not_found"

    # completions: channels (the template and a prompt argument), capabilities and handles of visible agents
    assert await values(client, TEMPLATE, "channel") == ["errors", "parallel-work", "roadmap"]
    assert await values(client, TEMPLATE, "channel", "ro") == ["roadmap"]
    join = types.PromptReference(name="join-team")
    assert await values(client, join, "channel", "pa") == ["parallel-work"]
    await ok(client, "warp_handle_set", handle="alice")
    await ok(client, "warp_registry_register", agentType="dev", capabilities=["python", "review"])
    assert await values(client, join, "handle") == ["alice"]
    assert await values(client, join, "capabilities", "python,r") == ["python,review"]
    assert await values(client, types.PromptReference(name="work-loop"), "capability", "py") == ["python"]
    assert await values(client, types.PromptReference(name="hand-off"), "to", "AL") == ["alice"]

    seen = await progress_of_a_waiting_claim(client, "python")
    assert seen, "no progress while the claim waited"
    assert all(message == "waiting for work on python" and total == 2.5 for _, total, message in seen)
    assert [p for p, _, _ in seen] == sorted(p for p, _, _ in seen)
    seen = await progress_of_a_waiting_claim(client, "review", "warp_work_claim_batch", 1500)
    assert seen and all(message == "waiting for work on review" and total == 1.5 for _, total, message in seen)
    assert not await progress_of_a_waiting_claim(client, "review", timeout=0)  # no wait, no progress


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_prompts_completions_and_progress_over_stdio(tmp_path: Path, nats_server: NatsServer, mode: str) -> None:
    async with agent(tmp_path, nats_server, "a", mode) as client:
        assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
        await check_the_surface(client)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_prompts_completions_and_progress_over_http(tmp_path: Path, nats_server: NatsServer, mode: str) -> None:
    trail, env = policy_env(tmp_path)
    key, key_id = await api_key(tmp_path, nats_server.url, "alice", "agent")
    async with (
        serving(tmp_path, "pc", nats_server.url, NATS_MCP_NAMESPACE="team-http", **env) as server,
        mcp_client(server.url, key, mode=mode) as client,
    ):
        await check_the_surface(client)
        await audited(
            trail, "a prompt", kind="tool_call", tool="prompts_get", outcome="ok", transport="http", key_id=key_id
        )
        await audited(trail, "a completion", kind="tool_call", tool="completion_complete", outcome="ok", key_id=key_id)


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_the_policy_hides_refuses_and_audits(tmp_path: Path, nats_server: NatsServer) -> None:
    trail, env = policy_env(tmp_path)
    async with (
        agent(tmp_path, nats_server, "ro", NATS_MCP_SECURITY_LOCAL_ROLES='["reader"]', **env) as ro,
        agent(tmp_path, nats_server, "w", NATS_MCP_SECURITY_LOCAL_ROLES='["worker"]', **env) as w,
    ):
        # a reader may use no prompt: none listed (the listing audited), a get refused (and audited), no completions
        assert (await ro.list_prompts()).prompts == []
        await audited(trail, "the listing", kind="tool_call", tool="prompts_list", outcome="ok")
        with pytest.raises(MCPError) as caught:
            await ro.get_prompt("join-team", {"handle": "mallory"})
        assert refused(caught) == "forbidden" and "handle_set" in caught.value.message
        denied = await audited(trail, "the refused prompt", kind="denied", tool="prompts_get", reason="policy_denied")
        assert denied["outcome"] == "forbidden"
        with pytest.raises(MCPError) as caught:
            await values(ro, types.PromptReference(name="join-team"), "channel")
        assert refused(caught) == "forbidden"
        await audited(trail, "the refused completion", kind="denied", tool="completion_complete")
        # channel names: only those it may read
        assert await values(ro, TEMPLATE, "channel") == ["roadmap"]
        assert await values(ro, TEMPLATE, "channel", "err") == []

        # a worker may claim python only and cannot broadcast: no hand-off; its capabilities are its grants
        assert {p.name for p in (await w.list_prompts()).prompts} == {"join-team", "work-loop"}
        with pytest.raises(MCPError) as caught:
            await w.get_prompt("hand-off", {"task": "x", "to": "bob"})
        assert refused(caught) == "forbidden"
        await ok(w, "warp_handle_set", handle="wendy")
        await ok(w, "warp_registry_register", agentType="dev", capabilities=["python", "rust"])
        assert await values(w, types.PromptReference(name="work-loop"), "capability") == ["python"]
        assert await values(w, types.PromptReference(name="join-team"), "channel") == ["roadmap"]
        assert "warp_work_claim" in text_of(await w.get_prompt("work-loop", {"capability": "python"}))
        await audited(trail, "the allowed prompt", kind="tool_call", tool="prompts_get", outcome="ok")


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_log_notifications_over_stdio(tmp_path: Path, nats_server: NatsServer) -> None:
    """NATS lost and back reaches a 2025 connection that set a level; the rate warning honours the level."""
    rate = {
        "NATS_MCP_SECURITY_LOCAL_RATE_LIMITED": "true",
        "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_RATE_PER_S": "0.01",
        "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_BURST": "10",
    }
    heard, quiet = Inbox(), Inbox()
    async with (
        agent(tmp_path, nats_server, "l", "legacy", heard, **FAST, **rate) as listener,
        agent(tmp_path, nats_server, "q", "legacy", quiet, **rate) as errors_only,
    ):
        assert listener.server_capabilities.logging is not None
        await listener.set_logging_level("info")  # limited (it spends a token) and audited like the rest
        await errors_only.set_logging_level("error")
        for _ in range(8):  # 1 of 10 tokens left: under 20 %
            await ok(listener, "warp_channels_list")
            await ok(errors_only, "warp_channels_list")
        await wait_for(lambda: "rate_limit_near" in heard.events(), 10, message="no rate warning")
        warning = heard.logs[heard.events().index("rate_limit_near")]
        assert warning.level == "warning" and warning.logger == "nats-mcp" and "burst left" in warning.data["message"]

        nats_server.restart()
        await wait_for(
            lambda: heard.events()[-2:] == ["nats_disconnected", "nats_reconnected"],
            20,
            message=lambda: f"heard {heard.events()}",
        )
        assert [p.level for p in heard.logs[-2:]] == ["warning", "info"]
        assert quiet.events() == []  # the same events and warning, below the level it set


async def test_rate_warning_over_http_on_2026(tmp_path: Path, nats_server: NatsServer) -> None:
    """On 2026-07-28 the request opts in with its _meta; the warning rides the call's own stream."""
    key, _ = await api_key(tmp_path, nats_server.url, "rate", "agent")
    env = {"NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_RATE_PER_S": "0.01", "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_BURST": "5"}
    heard = Inbox()
    async with serving(tmp_path, "rate", nats_server.url, NATS_MCP_NAMESPACE="team-rate", **env) as server:
        hc = http_client(key)
        async with hc, Client(streamable_http_client(server.url, http_client=hc), message_handler=heard) as client:  # type: ignore[arg-type]
            assert client.protocol_version == "2026-07-28"
            meta: Any = {"io.modelcontextprotocol/logLevel": "warning"}
            for _ in range(4):  # 1 of 5 tokens left: 20 %, not under
                assert not (await client.call_tool("warp_channels_list", {}, meta=meta)).is_error
            assert heard.events() == []
            assert not (await client.call_tool("warp_channels_list", {}, meta=meta)).is_error
            assert heard.events() == ["rate_limit_near"], heard.logs


async def test_nats_events_over_http_honour_each_sessions_level(tmp_path: Path, nats_server: NatsServer) -> None:
    """Two 2025 sessions on one HTTP server: each hears the NATS events at the level it set, on its own stream."""
    key, _ = await api_key(tmp_path, nats_server.url, "logs", "agent")
    loud, warn = Inbox(), Inbox()
    async with serving(tmp_path, "logs", nats_server.url, NATS_MCP_NAMESPACE="team-logs", **FAST) as server:
        hl, hw = http_client(key), http_client(key)
        async with (
            hl,
            hw,
            Client(streamable_http_client(server.url, http_client=hl), mode="legacy", message_handler=loud) as a,  # type: ignore[arg-type]
            Client(streamable_http_client(server.url, http_client=hw), mode="legacy", message_handler=warn) as b,  # type: ignore[arg-type]
        ):
            await a.set_logging_level("info")
            await b.set_logging_level("warning")
            nats_server.restart()
            await wait_for(
                lambda: loud.events() == ["nats_disconnected", "nats_reconnected"],
                20,
                message=lambda: f"heard {loud.events()}",
            )
            await wait_for(lambda: warn.events() == ["nats_disconnected"], 10, message=lambda: f"{warn.events()}")
            # the broadcast that sent loud the info event passed warn over: nothing more is on its way
            assert warn.events() == ["nats_disconnected"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_prompts_completions_and_progress_over_grpc(tmp_path: Path, nats_server: NatsServer, mode: str) -> None:
    """The Python client straight over gRPC (mTLS): the same surface, through the same guard."""
    pki = Pki.create(tmp_path / "pki")
    env = {"NATS_MCP_NAMESPACE": "team-grpc-pc", "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path)}
    async with (
        grpc_serving(tmp_path, "grpc", nats_server.url, pki.server(), "--client-ca", str(pki.ca_file), **env) as srv,
        Client(grpc_transport(target(srv, pki.client("alice"))), mode=mode) as client,  # type: ignore[arg-type]
    ):
        await check_the_surface(client)
