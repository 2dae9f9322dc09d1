"""What a client learns about the server over stdio, with the real SDK clients: serverInfo, tool metadata whose
schemas compile under strict ajv, and the protocol errors (unknown tool, bad cursor, unknown resource).

The schemas are checked as served by a live ``nats-mcp serve`` (every tool, the nats_* group included), with the
ajv inside the TypeScript SDK's node_modules in strict mode (``tests/e2e/ajv_schemas.mjs``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from nats_mcp.api.about import TITLE, WEBSITE_URL
from nats_mcp.api.resources import RESOURCE_NOT_FOUND
from tests.support.natsserver import NatsServer
from tests.support.node import node22
from tests.support.stdio import TOOLS, agent, ok
from tests.support.ts_client import TsClient

AJV_SCRIPT = Path(__file__).with_name("ajv_schemas.mjs")
# A role that is listed every tool: the coordination tools, the admin ones and the whole nats_* group.
EVERYTHING_POLICY = """
version: 1
roles:
  all:
    tools: ["*"]
    namespaces: ["*"]
    channels: {read: ["*"], send: ["*"]}
    capabilities: {broadcast: ["*"], claim: ["*"]}
    admin: [dlq, reservations]
    reservations: ["**"]
    nats: {server: true, subjects: {read: ["*"], write: ["*"]}, streams: {read: ["*"], write: ["*"]},
           buckets: {read: ["*"], write: ["*"]}}
"""


async def _unknown_tool(client: Client) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await client.call_tool("warp_no_such_tool", {})
    return caught.value


@pytest.mark.slow
async def test_live_schemas_compile_under_strict_ajv(tmp_path: Path, nats_server: NatsServer) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(EVERYTHING_POLICY)
    everything = {
        "NATS_MCP_NATS_OPS_ENABLED": "true",
        "NATS_MCP_SECURITY_POLICY_FILE": str(policy),
        "NATS_MCP_SECURITY_LOCAL_ROLES": '["all"]',
    }
    async with agent(tmp_path, nats_server, "lister", "team-m", **everything) as client:
        listed = await client.list_tools()
    tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]
    assert len(tools) == 52 and {t["name"] for t in tools} >= TOOLS
    assert all(t.get("title") for t in tools)
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps(tools))
    proc = subprocess.run(
        [node22(), str(AJV_SCRIPT), node22("--ts-sdk"), str(tools_file)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failures"] == [], report["failures"]
    assert report["compiled"] == 104  # an input and an output schema per tool


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_server_info_and_protocol_errors(tmp_path: Path, nats_server: NatsServer, mode: str) -> None:
    async with agent(tmp_path, nats_server, f"p-{mode}", "team-p", mode=mode) as client:
        revision = client.protocol_version
        assert revision == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        info = client.server_info
        assert info is not None and info.name == "nats-mcp" and info.title == TITLE and info.version
        assert info.website_url == WEBSITE_URL
        assert info.icons and info.icons[0].src.startswith("data:image/svg+xml;base64,")

        # An unknown tool is a JSON-RPC error, not a tool result; the server carries on.
        unknown = await _unknown_tool(client)
        assert unknown.code == types.INVALID_PARAMS and "warp_no_such_tool" in unknown.message

        # tools/list has one page: a cursor it never gave is refused, not read as "from the start".
        with pytest.raises(MCPError) as caught:
            await client.list_tools(cursor="bogus")
        assert caught.value.code == types.INVALID_PARAMS and "cursor" in caught.value.message

        # An unknown resource: -32002 up to 2025-11-25, INVALID_PARAMS from 2026-07-28 (SEP-2164); the URI in data.
        for uri in ("nats-mcp://channels/nope", "test://static-text"):
            with pytest.raises(MCPError) as caught:
                await client.read_resource(uri)
            assert caught.value.code == (RESOURCE_NOT_FOUND if mode == "legacy" else types.INVALID_PARAMS), uri
            assert caught.value.data["uri"] == uri
        with pytest.raises(MCPError) as caught:  # too long to look up: a malformed request on every revision
            await client.read_resource("nats-mcp://" + "x" * 2000)
        assert caught.value.code == types.INVALID_PARAMS

        # Still serving, and the legacy `visibility` (no longer advertised) is still accepted.
        agent_entry = (await ok(client, "warp_registry_register", agentType="dev", visibility="project-only"))["agent"]
        assert agent_entry["scope"] == "team"
        assert "roadmap" in {c["name"] for c in (await ok(client, "warp_channels_list"))["channels"]}


@pytest.mark.slow
def test_ts_sdk_sees_the_metadata_and_the_protocol_errors(
    tmp_path: Path,
    nats_server: NatsServer,
    ts_client: TsClient,
) -> None:
    calls: list[dict[str, Any]] = [
        {"name": "warp_no_such_tool", "arguments": {}},
        {"op": "listTools", "params": {"cursor": "bogus"}},
        {"op": "readResource", "params": {"uri": "nats-mcp://channels/nope"}},
        {"op": "listTools"},
    ]
    answer = ts_client.stdio(tmp_path, nats_server.url, calls)
    assert answer.get("connected"), answer
    info = answer["serverInfo"]
    assert info["title"] == TITLE and info["websiteUrl"] == WEBSITE_URL and info["icons"], info
    unknown, cursor, resource, listed = answer["calls"]
    assert unknown["error"]["code"] == types.INVALID_PARAMS, unknown  # thrown, not an isError result
    assert cursor["error"]["code"] == types.INVALID_PARAMS, cursor
    assert resource["error"]["code"] == RESOURCE_NOT_FOUND, resource  # the SDK speaks 2025-11-25
    assert resource["error"]["data"]["uri"] == "nats-mcp://channels/nope"
    tools = listed["result"]["tools"]
    assert len(tools) == 32 and all(t["title"] for t in tools)
    register = next(t for t in tools if t["name"] == "warp_registry_register")
    assert "visibility" not in register["inputSchema"]["properties"]
