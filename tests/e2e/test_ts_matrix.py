"""Client matrix, TypeScript SDK row: every coordination tool, resources, a subscription and prompts through the
official TypeScript SDK's Client (1.32.2) against `nats-mcp serve`, over stdio and streamable HTTP.

One Node process runs a whole scenario per transport (``tests/e2e/ts_matrix.mjs``). The SDK checks every
successful result's ``structuredContent`` against the tool's ``outputSchema`` itself and throws otherwise, so a
result here is one the SDK accepted; each tool also fails once, and that failure must reach the caller as a
result with its code and message, never as the SDK's ``-32602``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nats_mcp.api.resources import INBOX_URI, RESOURCE_NOT_FOUND, channel_uri
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.http_server import api_key, serving
from tests.support.natsserver import NatsServer
from tests.support.stdio import TOOLS
from tests.support.ts_client import ERROR_META, TsClient

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("ts_matrix.mjs")
RUN_TIMEOUT_S = 120
CAP = "python"
UNKNOWN_GUID = "0" * 32
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
ROADMAP = channel_uri("roadmap")
BURST = {"NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_BURST": "200"}


@dataclass(frozen=True)
class Step:
    """One step of the scenario and what it must give: a tool result (``code`` None: success), any other result,
    or (``thrown``) the JSON-RPC error the SDK throws."""

    spec: dict[str, Any]
    code: str | None = None
    words: str = ""
    thrown: int | None = None

    @property
    def tool(self) -> str | None:
        name: str | None = self.spec.get("tool")
        return name


def ok(tool: str, save: dict[str, str] | None = None, **arguments: Any) -> Step:
    return Step({"tool": tool, "arguments": arguments, "save": save or {}})


def fails(tool: str, code: str, words: str = "", **arguments: Any) -> Step:
    return Step({"tool": tool, "arguments": arguments}, code=code, words=words)


def op(method: str, save: dict[str, str] | None = None, **params: Any) -> Step:
    return Step({"op": method, "params": params, "save": save or {}})


# One agent's day, in an order where each step's state is known: every tool succeeds once and fails once.
SCENARIO: list[Step] = [
    ok("warp_handle_get"),
    fails("warp_handle_get", "invalid_argument", "bogus", bogus=1),
    fails("warp_channels_send", "not_registered", "warp_handle_set", channel="roadmap", message="too early"),
    ok("warp_handle_set", handle="matrix"),
    fails("warp_handle_set", "invalid_name", "handle", handle="Bad Handle"),
    ok("warp_channels_list"),
    fails("warp_channels_list", "invalid_argument", "bogus", bogus=1),
    ok("warp_channels_send", channel="roadmap", message="hello from the matrix"),
    fails("warp_channels_send", "not_found", "nope", channel="nope", message="x"),
    READ := ok("warp_channels_read", channel="roadmap"),
    fails("warp_channels_read", "invalid_name", "channel", channel="Not A Channel!"),
    ok("warp_channels_status", channel="roadmap"),
    fails("warp_channels_status", "not_found", "nope", channel="nope"),
    fails("warp_work_claim", "not_registered", "regist", capability=CAP, timeout=0),
    ok("warp_registry_register", {"guid": "structuredContent.agent.guid"}, agentType="worker", capabilities=[CAP]),
    fails("warp_registry_register", "invalid_name", "no.dots", agentType="worker", capabilities=["no.dots"]),
    ok("warp_registry_discover", capability=CAP),
    fails("warp_registry_discover", "invalid_cursor", "cursor", cursor="garbage!"),
    ok("warp_registry_get_info", guid="$guid"),
    fails("warp_registry_get_info", "not_found", "agent", guid=UNKNOWN_GUID),
    ok("warp_registry_update_presence", status="busy", currentTaskCount=1),
    fails("warp_registry_update_presence", "invalid_argument", "currentTaskCount", currentTaskCount=-1),
    ok("warp_messages_send_direct", recipientGuid="$guid", message="note to self"),
    fails("warp_messages_send_direct", "not_found", "", recipientGuid=UNKNOWN_GUID, message="x"),
    ok("warp_messages_read_direct"),
    fails("warp_messages_read_direct", "invalid_argument", "limit", limit=0),
    ok(
        "warp_work_broadcast",
        {"first": "structuredContent.workItemId"},
        taskId="t1",
        description="do t1",
        requiredCapability=CAP,
        priority=9,
    ),
    fails("warp_work_broadcast", "invalid_name", "", taskId="t", description="d", requiredCapability="Bad Cap"),
    ok("warp_work_list", capability=CAP),
    fails("warp_work_list", "invalid_argument", "limit", capability=CAP, limit=0),
    ok("warp_work_queue_status", capability=CAP),
    fails("warp_work_queue_status", "invalid_name", "", capability="Bad Cap"),
    CLAIM := ok("warp_work_claim", capability=CAP, timeout=0),
    fails("warp_work_claim", "invalid_argument", "timeout", capability=CAP, timeout=-1),
    ok("warp_work_progress", workItemId="$first", progress=50, note="half way"),
    fails("warp_work_progress", "not_found", "", workItemId=UNKNOWN_ID, progress=50),
    ok("warp_work_complete", workItemId="$first", result={"ok": True}),
    fails("warp_work_complete", "conflict", "", workItemId="$first"),
    ok("warp_work_broadcast", taskId="t2", description="do t2", requiredCapability=CAP, priority=5),
    ok("warp_work_broadcast", taskId="t3", description="do t3", requiredCapability=CAP, priority=4),
    ok(
        "warp_work_claim_batch",
        {"second": "structuredContent.workItems.0.id", "third": "structuredContent.workItems.1.id"},
        capability=CAP,
        max=5,
        timeout=0,
    ),
    fails("warp_work_claim_batch", "invalid_argument", "max", capability=CAP, max=0, timeout=0),
    ok("warp_work_fail", workItemId="$second", reason="cannot", recoverable=False),
    fails("warp_work_fail", "not_found", "", workItemId=UNKNOWN_ID, reason="x"),
    ok("warp_work_fail", workItemId="$third", reason="cannot either", recoverable=False),
    ok("warp_dlq_list", capability=CAP),
    fails("warp_dlq_list", "invalid_cursor", "cursor", cursor="garbage!"),
    ok("warp_dlq_retry", itemId="$second"),
    fails("warp_dlq_retry", "not_found", "", itemId=UNKNOWN_ID),
    ok("warp_dlq_discard", itemId="$third"),
    fails("warp_dlq_discard", "not_found", "", itemId=UNKNOWN_ID),
    ok("warp_work_get", workItemId="$first"),
    fails("warp_work_get", "not_found", "", workItemId=UNKNOWN_ID),
    ok(
        "warp_work_broadcast",
        {"fifth": "structuredContent.workItemId"},
        taskId="t5",
        description="do t5",
        requiredCapability=CAP,
        priority=10,
    ),
    ok("warp_work_claim", capability=CAP, timeout=0),  # t5: the highest priority
    ok("warp_work_cancel", workItemId="$fifth"),
    fails("warp_work_cancel", "not_found", "", workItemId=UNKNOWN_ID),
    fails("warp_work_progress", "cancelled", "cancelled", workItemId="$fifth"),  # the claimer is told
    ok(
        "warp_work_broadcast",
        {"sixth": "structuredContent.workItemId"},
        taskId="t6",
        description="do t6",
        requiredCapability=CAP,
    ),
    ok("warp_work_force_cancel", workItemId="$sixth"),  # an admin's cancel (this principal may admin the DLQ)
    fails("warp_work_force_cancel", "not_found", "", workItemId=UNKNOWN_ID),
    ok("warp_reservations_acquire", {"resv": "structuredContent.reservationId"}, resources=["src/api/**"]),
    fails("warp_reservations_acquire", "invalid_argument", "escapes the project", resources=["../outside"]),
    ok("warp_reservations_renew", reservationId="$resv", ttlSeconds=600),
    fails("warp_reservations_renew", "not_found", "", reservationId=UNKNOWN_ID),
    ok("warp_reservations_list", resource="src/**"),
    fails("warp_reservations_list", "invalid_name", "holderGuid", holderGuid="nope"),
    ok("warp_reservations_release", reservationId="$resv"),
    fails("warp_reservations_release", "not_found", "", reservationId="$resv"),
    ok("warp_reservations_acquire", {"resv2": "structuredContent.reservationId"}, resources=["docs/**"]),
    ok("warp_reservations_force_release", reservationId="$resv2"),
    fails("warp_reservations_force_release", "not_found", "", reservationId=UNKNOWN_ID),
    ok("warp_registry_deregister"),
    fails("warp_registry_deregister", "invalid_argument", "bogus", bogus=1),
    # resources: list, read, a subscription that hears a send, an unknown channel's read
    op("listResources"),
    op("listResourceTemplates"),
    op("readResource", uri=ROADMAP),
    op("readResource", uri=INBOX_URI),
    Step({"op": "readResource", "params": {"uri": channel_uri("nope")}}, thrown=RESOURCE_NOT_FOUND),
    op("subscribeResource", uri=ROADMAP),
    ok("warp_channels_send", channel="roadmap", message="heard by the subscriber"),
    Step({"await": ROADMAP, "timeoutMs": 20000}),
    op("unsubscribeResource", uri=ROADMAP),
    op("listPrompts"),
]


def run_matrix(ts: TsClient, tmp_path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """The scenario through the SDK in one Node process: what it returned or threw, per step."""
    steps = [step.spec for step in SCENARIO]
    proc = subprocess.run(
        [ts.node, str(SCRIPT), ts.modules, json.dumps({**spec, "steps": steps})],
        env=isolated_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert proc.returncode == 0, f"ts_matrix.mjs exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer.get("connected"), answer
    assert len(answer["steps"]) == len(SCENARIO), answer
    return answer


def check_scenario(answer: dict[str, Any]) -> None:
    by_op: dict[str, Any] = {}
    succeeded: set[str] = set()
    failed: set[str] = set()
    for step, got in zip(SCENARIO, answer["steps"], strict=True):
        if step.thrown is not None:
            assert got["error"]["code"] == step.thrown, (step.spec, got)
            assert got["error"]["data"]["uri"] == step.spec["params"]["uri"], (step.spec, got)
            continue
        assert "error" not in got, f"{step.spec}: the SDK threw {got['error']}"  # e.g. McpError -32602
        result = got["result"]
        if step.tool is None:
            by_op.setdefault(step.spec.get("op", "await"), []).append(result)
            continue
        text = result["content"][0]["text"]
        if step.code is None:
            # The SDK validated structuredContent against the outputSchema (it throws otherwise).
            assert not result.get("isError"), (step.spec, text)
            assert isinstance(result["structuredContent"], dict), (step.spec, result)
            assert not text.startswith("Error:"), (step.spec, text)
            succeeded.add(step.tool)
        else:
            assert result["isError"] is True, (step.spec, result)
            assert "structuredContent" not in result, (step.spec, result)
            assert text.startswith(f"Error: [{step.code}] "), (step.spec, text)
            assert step.words in text, (step.spec, text)
            meta = result["_meta"][ERROR_META]
            assert meta["code"] == step.code and meta["message"] in text, (step.spec, result)
            failed.add(step.tool)
    assert succeeded == TOOLS and failed == TOOLS

    def structured(step: Step) -> dict[str, Any]:
        found: dict[str, Any] = answer["steps"][SCENARIO.index(step)]["result"]["structuredContent"]
        return found

    assert structured(CLAIM)["workItem"]["taskId"] == "t1"  # the item broadcast before, with its priority
    read = structured(READ)
    assert [m["message"] for m in read["messages"]] == ["hello from the matrix"]
    assert [m["handle"] for m in read["messages"]] == ["matrix"]

    uris = {r["uri"] for r in by_op["listResources"][0]["resources"]}
    assert {ROADMAP, INBOX_URI} <= uris, uris
    templates = by_op["listResourceTemplates"][0]["resourceTemplates"]
    assert [t["uriTemplate"] for t in templates] == ["nats-mcp://channels/{channel}"], templates
    roadmap, inbox = by_op["readResource"]
    assert roadmap["contents"][0]["uri"] == ROADMAP
    assert "hello from the matrix" in roadmap["contents"][0]["text"]
    assert inbox["contents"][0]["uri"] == INBOX_URI
    assert by_op["await"][0]["updates"] >= 1  # notifications/resources/updated after the send
    # no prompts yet: the list answers (not "method not found"); any prompt added later must parse in the SDK
    prompts = by_op["listPrompts"][0]["prompts"]
    assert isinstance(prompts, list) and all(isinstance(p["name"], str) for p in prompts), prompts
    assert answer["capabilities"]["resources"]["subscribe"] is True


def test_stdio_scenario(tmp_path: Path, nats_server: NatsServer, ts_client: TsClient) -> None:
    env = isolated_env(tmp_path, NATS_URL=nats_server.url)
    spec = {"transport": "stdio", "command": nats_mcp_exe(), "args": ["serve"], "env": env, "cwd": str(tmp_path)}
    check_scenario(run_matrix(ts_client, tmp_path, spec))


async def test_http_scenario(tmp_path: Path, nats_server: NatsServer, ts_client: TsClient) -> None:
    key, _ = await api_key(tmp_path, nats_server.url, "ts-matrix", "agent")
    # the scenario's ~60 calls come in quick succession from one key: above the default burst of 40, so raise it here
    async with serving(tmp_path, "matrix", nats_server.url, **BURST) as server:
        spec = {"transport": "http", "url": server.url, "bearer": key}
        answer = await asyncio.to_thread(run_matrix, ts_client, tmp_path, spec)
    assert answer["protocolVersion"] == "2025-11-25"
    check_scenario(answer)
