"""Third-party client boundary: the official MCP TypeScript SDK's Client (what Claude Code, Cursor, VS Code and the
Inspector are built on) against `nats-mcp serve` over stdio and streamable HTTP.

The SDK checks every tool result's ``structuredContent`` against the tool's ``outputSchema`` — error results too,
when they carry one — and throws ``McpError -32602`` on a mismatch, so a tool error the model should read must
reach it as a result. ``tests/e2e/ts_client.mjs`` (run on Node 22, with the SDK ``scripts/node22`` pins) prints
what the SDK returned or threw for each call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.http_process import create_api_key, serve_http
from tests.support.natsserver import NatsServer
from tests.support.ts_client import ERROR_META, SUCCESS_CALL, TsClient

pytestmark = pytest.mark.slow


# (call, the stable code it must fail with, words the message must contain)
ERROR_CALLS: list[tuple[dict[str, Any], str, str]] = [
    (
        {"name": "warp_channels_send", "arguments": {"channel": "roadmap", "message": "hi"}},
        "not_registered",
        "warp_handle_set",
    ),
    ({"name": "warp_channels_read", "arguments": {"channel": "Not A Channel!"}}, "invalid_name", "channel"),
    ({"name": "warp_work_claim", "arguments": {"capability": "reviews", "timeout": 0}}, "not_registered", "regist"),
    ({"name": "warp_registry_get_info", "arguments": {"guid": "0" * 32}}, "not_found", "agent"),
    ({"name": "warp_registry_get_info", "arguments": {"agentId": "0" * 32}}, "invalid_argument", "guid"),
]


# A policy refusal (stdio, under BOUNDED_POLICY): broadcasting to a work boundary the local role is not granted.
REFUSED_BOUNDARY = (
    {
        "name": "warp_work_broadcast",
        "arguments": {"taskId": "t", "description": "d", "requiredCapability": "python", "boundary": "corporate"},
    },
    "forbidden",
    "boundary corporate",
)
BOUNDED_POLICY = """
version: 1
roles:
  agent:
    tools: ["*"]
    namespaces: ["*"]
    channels: {read: ["*"], send: ["*"]}
    capabilities: {broadcast: ["*"], claim: ["*"], boundaries: [open-source]}
"""


def _check_error_results(answer: dict[str, Any], expected: list[tuple[dict[str, Any], str, str]] = ERROR_CALLS) -> None:
    """Each error call is a result the SDK accepted: isError, our message and code in the text and in ``_meta``."""
    assert answer.get("connected"), answer
    calls = answer["calls"]
    assert len(calls) == len(expected) + 1, answer
    for (call, code, words), got in zip(expected, calls, strict=False):
        assert "error" not in got, f"{call['name']}: the SDK threw {got['error']}"  # e.g. McpError -32602
        result = got["result"]
        text = result["content"][0]["text"]
        assert result["isError"] is True, (call, result)
        assert "structuredContent" not in result, (call, result)
        assert text.startswith(f"Error: [{code}] "), (call, text)
        assert words in text, (call, text)
        meta = result["_meta"][ERROR_META]
        assert meta["code"] == code and meta["message"] in text, (call, result)
    success = calls[-1]
    assert "error" not in success, success
    result = success["result"]
    assert not result.get("isError"), result
    # The SDK validated it against the output schema (it throws otherwise); it is the real structured result.
    assert {ch["name"] for ch in result["structuredContent"]["channels"]} >= {"roadmap", "errors"}, result


def test_stdio_errors_reach_the_model(tmp_path: Path, nats_server: NatsServer, ts_client: TsClient) -> None:
    expected = [*ERROR_CALLS, REFUSED_BOUNDARY]
    calls = [call for call, _, _ in expected] + [SUCCESS_CALL]
    policy = tmp_path / "policy.yaml"
    policy.write_text(BOUNDED_POLICY)
    answer = ts_client.stdio(tmp_path, nats_server.url, calls, NATS_MCP_SECURITY_POLICY_FILE=str(policy))
    _check_error_results(answer, expected)


def test_http_errors_reach_the_model(tmp_path: Path, nats_server: NatsServer, ts_client: TsClient) -> None:
    """Over its 2025-11-25 session, whose calls the server answers through api/direct.py (the default; the
    session differential in tests/integration/test_http_direct.py holds that path equal to the SDK's dispatcher)."""
    key = create_api_key(tmp_path, nats_server.url, "ts-client")
    calls = [call for call, _, _ in ERROR_CALLS] + [SUCCESS_CALL, {"name": "warp_no_such_tool", "arguments": {}}]
    with serve_http(tmp_path, nats_server.url, LOG_LEVEL="DEBUG") as server:
        answer = ts_client.run(tmp_path, {"transport": "http", "url": server.url, "bearer": key, "calls": calls})
        # Answered through the own path: it says so once per session (absent with NATS_MCP_HTTP_OWN_DISPATCH=0).
        assert "tools/call and ping answered by api/direct.py" in server.log_text()
        unknown = answer["calls"].pop()
        _check_error_results(answer)
        error = unknown["error"]  # thrown by the SDK: our JSON-RPC error, its code and words
        assert error["code"] == -32602 and "Unknown tool: 'warp_no_such_tool'" in error["message"], unknown


def test_http_wrong_key_says_the_key_is_invalid(tmp_path: Path, nats_server: NatsServer, ts_client: TsClient) -> None:
    """A key the server does not know, or none: the client's error says so, not "HTTP 404 … Not Found".

    With the headers alone the SDK reports the 401's body. With an OAuth client provider, as OAuth-capable clients
    (Claude Code) have, it runs OAuth discovery on the 401 instead; with API keys only there is no authorization
    server, and the fallback registration endpoint answers an OAuth error saying the server takes API keys.
    """
    create_api_key(tmp_path, nats_server.url, "ts-client")  # the key store exists; this key is not presented
    wrong = "nmk_000000000000_" + "A" * 43
    cases = [
        (wrong, False, "unknown API key"),
        (None, False, "no credentials"),
        (wrong, True, "does not use OAuth: it takes an API key"),
        (None, True, "does not use OAuth"),
    ]
    with serve_http(tmp_path, nats_server.url) as server:
        for bearer, oauth, words in cases:
            spec = {"transport": "http", "url": server.url, "bearer": bearer, "oauth": oauth, "calls": []}
            answer = ts_client.run(tmp_path, spec)
            assert not answer["connected"], answer
            message = answer["error"]["message"]
            assert words in message, (bearer, oauth, answer)
            assert "404" not in message and "Not Found" not in message, answer
            assert "A" * 43 not in message, answer  # the secret is never echoed


def test_stdio_prompts_completions_and_progress(tmp_path: Path, nats_server: NatsServer, ts_client: TsClient) -> None:
    """The SDK lists and gets a prompt, completes a channel and a prompt argument, and hears a claim wait."""
    template = {"type": "ref/resource", "uri": "nats-mcp://channels/{channel}"}
    calls: list[dict[str, Any]] = [
        {"op": "listPrompts"},
        {"op": "getPrompt", "params": {"name": "work-loop", "arguments": {"capability": "python"}}},
        {"op": "complete", "params": {"ref": template, "argument": {"name": "channel", "value": "ro"}}},
        {"name": "warp_registry_register", "arguments": {"agentType": "dev", "capabilities": ["python"]}},
        {
            "op": "complete",
            "params": {
                "ref": {"type": "ref/prompt", "name": "work-loop"},
                "argument": {"name": "capability", "value": "p"},
            },
        },
        {"name": "warp_work_claim", "arguments": {"capability": "python", "timeout": 2500}, "progress": True},
    ]
    answer = ts_client.stdio(tmp_path, nats_server.url, calls)
    assert answer.get("connected"), answer
    got = answer["calls"]
    assert all("error" not in call for call in got), got
    listed, prompt, channels, _, capabilities, claim = (call["result"] for call in got)
    assert {p["name"] for p in listed["prompts"]} == {"join-team", "work-loop", "hand-off"}
    assert "warp_work_claim" in prompt["messages"][0]["content"]["text"]
    assert channels["completion"]["values"] == ["roadmap"]
    assert capabilities["completion"]["values"] == ["python"]
    assert claim["structuredContent"] == {"workItem": None}
    progress = got[-1]["progress"]
    assert progress and all(p["message"] == "waiting for work on python" and p["total"] == 2.5 for p in progress)
