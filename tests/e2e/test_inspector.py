"""Third-party client boundary: the MCP Inspector CLI (2.12.0, Node 22) drives `nats-mcp serve` over stdio.

Node 22 and the inspector come from ``scripts/node22`` (npm registry, cached in .cache/). The inspector
starts the server itself: it passes on only HOME, LOGNAME, PATH, SHELL, TERM and USER from its own
environment, so every other variable goes through ``-e KEY=VALUE``; ``--cwd`` sets the server's directory.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NODE22 = ROOT / "scripts" / "node22"
INSPECTOR_VERSION = "2.12.0"
INSTALL_TIMEOUT_S = 300
RUN_TIMEOUT_S = 60

TOOLS = {
    "warp_handle_set",
    "warp_handle_get",
    "warp_channels_list",
    "warp_channels_send",
    "warp_channels_read",
    "warp_channels_status",
    "warp_registry_register",
    "warp_registry_discover",
    "warp_registry_get_info",
    "warp_registry_update_presence",
    "warp_registry_deregister",
    "warp_messages_send_direct",
    "warp_messages_read_direct",
}
DEFAULT_CHANNELS = {"roadmap", "parallel-work", "errors"}


@dataclass(frozen=True)
class Inspector:
    node: str
    launcher: str

    def run(self, tmp_path: Path, nats_url: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``inspector --cli nats-mcp serve <args> --format json`` with an isolated environment for both."""
        env = isolated_env(tmp_path, NATS_URL=nats_url)
        server_env = [arg for key, value in env.items() if value for arg in ("-e", f"{key}={value}")]
        cmd = [self.node, self.launcher, "--cli", *server_env, "--cwd", str(tmp_path)]
        cmd += [nats_mcp_exe(), "serve", *args, "--format", "json"]
        return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def _node22(*args: str) -> str:
    try:
        proc = subprocess.run(
            [str(NODE22), *args], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"scripts/node22 {' '.join(args)} could not run: {exc!r}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"Node 22 / MCP Inspector {INSPECTOR_VERSION} could not be installed: scripts/node22 {' '.join(args)} "
            f"exited {proc.returncode}\n{proc.stderr}",
            pytrace=False,
        )
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    """Node 22 + inspector, installed on first use (fails, never skips, if that is impossible)."""
    found = Inspector(node=_node22(), launcher=_node22("--inspector"))
    version = subprocess.run(
        [found.node, found.launcher, "--cli", "--version"], capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert version.stdout.strip() == INSPECTOR_VERSION, version
    return found


def _result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``--format json`` envelope after checking the exit code (the server's log is in stderr)."""
    detail = f"inspector exited {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode == 0, detail
    envelope = json.loads(proc.stdout)
    assert isinstance(envelope, dict) and "result" in envelope, detail
    return envelope


def test_tools_list_shows_every_tool_with_a_description(
    tmp_path: Path, nats_server: NatsServer, inspector: Inspector
) -> None:
    envelope = _result(inspector.run(tmp_path, nats_server.url, "--method", "tools/list"))
    tools = {tool["name"]: tool for tool in envelope["result"]["tools"]}
    assert set(tools) >= TOOLS, f"missing tools: {sorted(TOOLS - set(tools))}; listed: {sorted(tools)}"
    undescribed = sorted(name for name in TOOLS if not str(tools[name].get("description") or "").strip())
    assert not undescribed, f"tools without a description: {undescribed}"


def test_tools_list_strict_schema_portability(tmp_path: Path, nats_server: NatsServer, inspector: Inspector) -> None:
    """``--strict`` exits 6 on any error-severity schema finding; warnings are reported but allowed."""
    proc = inspector.run(tmp_path, nats_server.url, "--method", "tools/list", "--strict")
    envelope = _result(proc)
    errors = [
        (found["toolName"], finding)
        for found in envelope.get("schemaFindings", [])
        for finding in found["findings"]
        if finding.get("severity") == "error"
    ]
    assert not errors, f"schema portability errors: {errors}\n{proc.stderr}"
    assert {tool["name"] for tool in envelope["result"]["tools"]} >= TOOLS


def test_tools_call_channels_list_returns_default_channels(
    tmp_path: Path, nats_server: NatsServer, inspector: Inspector
) -> None:
    proc = inspector.run(tmp_path, nats_server.url, "--method", "tools/call", "--tool-name", "warp_channels_list")
    result = _result(proc)["result"]
    assert result.get("isError", False) is False, result
    channels = result["structuredContent"]["channels"]
    assert {channel["name"] for channel in channels} == DEFAULT_CHANNELS, channels
    assert result["content"] and result["content"][0]["type"] == "text", result


def test_tools_call_error_shows_the_message_and_code(
    tmp_path: Path, nats_server: NatsServer, inspector: Inspector
) -> None:
    """A tool error is a result the inspector shows (its SDK client checks structuredContent against the tool's
    outputSchema even on errors: an error object there made it fail the call with -32602 instead)."""
    proc = inspector.run(
        tmp_path,
        nats_server.url,
        "--method",
        "tools/call",
        "--tool-name",
        "warp_channels_send",
        "--tool-arg",
        "channel=roadmap",
        "--tool-arg",
        "message=hello",
    )
    detail = f"inspector exited {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    # the inspector prints the result, then exits 5 saying the tool answered an error (not that the call failed)
    assert proc.returncode == 5, detail
    assert json.loads(proc.stderr.strip().splitlines()[-1])["error"]["code"] == "tool_is_error", detail
    result = json.loads(proc.stdout)["result"]
    assert result.get("isError") is True, result
    assert "structuredContent" not in result, result
    text = result["content"][0]["text"]
    assert text.startswith("Error: [not_registered] ") and "warp_handle_set" in text, result
    assert result["_meta"]["io.nats-mcp/error"]["code"] == "not_registered", result
    assert "-32602" not in proc.stdout + proc.stderr
