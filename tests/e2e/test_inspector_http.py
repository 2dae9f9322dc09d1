"""Third-party client boundary over HTTP: the MCP Inspector CLI (2.12.0, Node 22) against `serve --transport http`.

The server runs authenticated (API keys, the default provider); the key comes from ``nats-mcp keys create``
against the same NATS and goes in ``--header "Authorization: Bearer <key>"``. ``--stored-auth-only`` keeps
the inspector from starting interactive OAuth when the server answers 401 (it would fail for want of a TTY
anyway, with a less telling message).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nats_mcp.api.tools.coordination import TOOLS
from tests.support.env import isolated_env
from tests.support.http_process import HttpServer, create_api_key, serve_http
from tests.support.natsserver import NatsServer
from tests.support.node import node22

pytestmark = pytest.mark.slow

INSPECTOR_VERSION = "2.12.0"
RUN_TIMEOUT_S = 60
TOOL_COUNT = 32
TOOL_NAMES = {f"warp_{spec.suffix}" for spec in TOOLS}
DEFAULT_CHANNELS = {"roadmap", "parallel-work", "errors"}


@dataclass(frozen=True)
class Inspector:
    node: str
    launcher: str

    def run(self, tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``inspector --cli URL --transport http --stored-auth-only <args> --format json``, isolated environment."""
        cmd = [self.node, self.launcher, "--cli", url, "--transport", "http", "--stored-auth-only", *args]
        cmd += ["--format", "json"]
        return subprocess.run(
            cmd, env=isolated_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    """Node 22 + inspector, installed on first use (fails, never skips, if that is impossible)."""
    found = Inspector(node=node22(), launcher=node22("--inspector"))
    version = subprocess.run(
        [found.node, found.launcher, "--cli", "--version"], capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert version.stdout.strip() == INSPECTOR_VERSION, version
    return found


def _detail(proc: subprocess.CompletedProcess[str], server: HttpServer) -> str:
    return (
        f"inspector exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr}"
        f"\n--- server log ---\n{server.log_text()[-4000:]}"
    )


def _result(proc: subprocess.CompletedProcess[str], server: HttpServer) -> dict[str, Any]:
    """The ``result`` of the ``--format json`` envelope after checking the exit code."""
    assert proc.returncode == 0, _detail(proc, server)
    envelope = json.loads(proc.stdout)
    assert isinstance(envelope, dict) and "result" in envelope, _detail(proc, server)
    return dict(envelope["result"])


def _auth_error(proc: subprocess.CompletedProcess[str], server: HttpServer) -> str:
    """The inspector's error message for a refused connection (non-zero exit, ``auth_required``)."""
    assert proc.returncode != 0, _detail(proc, server)
    envelope = json.loads(proc.stderr.strip().splitlines()[-1])
    assert envelope["error"]["code"] == "auth_required", _detail(proc, server)
    return str(envelope["error"]["message"])


def test_list_and_call_with_bearer_token(tmp_path: Path, nats_server: NatsServer, inspector: Inspector) -> None:
    """With the key: every tool listed (with a description), and a cheap tool call answers."""
    key = create_api_key(tmp_path, nats_server.url, "inspector")
    bearer = ("--header", f"Authorization: Bearer {key}")
    assert len(TOOL_NAMES) == TOOL_COUNT
    with serve_http(tmp_path, nats_server.url) as server:
        listed = _result(inspector.run(tmp_path, server.url, *bearer, "--method", "tools/list"), server)
        tools = {tool["name"]: tool for tool in listed["tools"]}
        assert set(tools) == TOOL_NAMES, (
            f"missing {sorted(TOOL_NAMES - set(tools))}, extra {sorted(set(tools) - TOOL_NAMES)}"
        )
        undescribed = sorted(name for name, tool in tools.items() if not str(tool.get("description") or "").strip())
        assert not undescribed, f"tools without a description: {undescribed}"

        proc = inspector.run(
            tmp_path, server.url, *bearer, "--method", "tools/call", "--tool-name", "warp_channels_list"
        )
        result = _result(proc, server)
        assert result.get("isError", False) is False, result
        assert {channel["name"] for channel in result["structuredContent"]["channels"]} == DEFAULT_CHANNELS, result
        assert result["content"] and result["content"][0]["type"] == "text", result


def test_refused_without_a_valid_token(tmp_path: Path, nats_server: NatsServer, inspector: Inspector) -> None:
    """No header, or a key the server does not know: the inspector cannot connect (401 invalid_token)."""
    with serve_http(tmp_path, nats_server.url) as server:
        bare = inspector.run(tmp_path, server.url, "--method", "tools/list")
        assert "invalid_token" in _auth_error(bare, server), _detail(bare, server)
        wrong = "nmk_000000000000_" + "A" * 43
        forged = inspector.run(
            tmp_path, server.url, "--header", f"Authorization: Bearer {wrong}", "--method", "tools/list"
        )
        assert "invalid_token" in _auth_error(forged, server), _detail(forged, server)
        assert '"tools"' not in bare.stdout + forged.stdout
