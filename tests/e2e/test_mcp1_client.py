"""Client matrix, Python `mcp` 1.x row: the previous major line's ClientSession against `nats-mcp serve` over stdio
and streamable HTTP, from its own locked environment (never the project's venv, which holds `mcp` 2.x).

``tests/clients/mcp1`` holds the environment's pyproject and uv.lock; the fixture installs it with
``uv sync --frozen`` (from the lock alone) into ``.cache/mcp1-venv`` and runs ``mcp1_client.py`` there.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.http_server import api_key, serving
from tests.support.natsserver import NatsServer
from tests.support.stdio import TOOLS
from tests.support.ts_client import ERROR_META

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "tests" / "clients" / "mcp1"
SCRIPT = PROJECT / "mcp1_client.py"
VENV = ROOT / ".cache" / "mcp1-venv"
UV = ROOT / ".cache" / "uv" / "bin" / "uv"
MCP1_PIN: str = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"][0]
MCP1_VERSION = MCP1_PIN.removeprefix("mcp==")
INSTALL_TIMEOUT_S = 300
RUN_TIMEOUT_S = 90

# (call, None for success or the code it must fail with): errors before and after the handle, successes between
CALLS: list[tuple[dict[str, Any], str | None]] = [
    ({"name": "warp_channels_send", "arguments": {"channel": "roadmap", "message": "hi"}}, "not_registered"),
    ({"name": "warp_handle_set", "arguments": {"handle": "legacy"}}, None),
    ({"name": "warp_channels_send", "arguments": {"channel": "roadmap", "message": "from mcp 1.x"}}, None),
    ({"name": "warp_channels_read", "arguments": {"channel": "Not A Channel!"}}, "invalid_name"),
    ({"name": "warp_channels_read", "arguments": {"channel": "roadmap"}}, None),
    ({"name": "warp_registry_get_info", "arguments": {"guid": "0" * 32}}, "not_found"),
]


@dataclass(frozen=True)
class Mcp1Client:
    python: Path

    def run(self, tmp_path: Path, spec: dict[str, Any]) -> dict[str, Any]:
        calls = [call for call, _ in CALLS]
        proc = subprocess.run(
            [str(self.python), str(SCRIPT), json.dumps({**spec, "calls": calls})],
            env=isolated_env(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        assert proc.returncode == 0, f"mcp1_client.py exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        found: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return found


@pytest.fixture(scope="module")
def mcp1_client() -> Mcp1Client:
    """The 1.x environment, installed from its lock on first use (fails, never skips, if that is impossible)."""
    if not UV.exists():
        pytest.fail(f"{UV} is missing: run scripts/bootstrap test first", pytrace=False)
    env = dict(os.environ, UV_PROJECT_ENVIRONMENT=str(VENV), UV_SYSTEM_CERTS="1", UV_PYTHON_DOWNLOADS="never")
    try:
        proc = subprocess.run(
            [str(UV), "sync", "--frozen", "--quiet", "--project", str(PROJECT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"uv sync of {PROJECT} could not run: {exc!r}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"uv sync of {PROJECT} exited {proc.returncode}\n{proc.stderr}", pytrace=False)
    return Mcp1Client(VENV / "bin" / "python")


def check(answer: dict[str, Any]) -> None:
    assert answer["mcpVersion"] == MCP1_VERSION
    assert answer["protocolVersion"] == "2025-11-25", answer  # 1.x's newest revision, which the server speaks
    assert answer["serverInfo"]["name"] == "nats-mcp", answer
    assert set(answer["tools"]) == TOOLS
    assert len(answer["calls"]) == len(CALLS)
    for (call, code), got in zip(CALLS, answer["calls"], strict=True):
        assert "error" not in got, f"{call['name']}: the 1.x client raised {got['error']}"
        result = got["result"]
        text = result["content"][0]["text"]
        if code is None:
            # 1.x validated structuredContent against the outputSchema (it raises otherwise)
            assert not result["isError"], (call, text)
            assert isinstance(result["structuredContent"], dict), (call, result)
        else:
            assert result["isError"] is True, (call, result)
            assert "structuredContent" not in result, (call, result)
            assert text.startswith(f"Error: [{code}] "), (call, text)
            assert result["_meta"][ERROR_META]["code"] == code, (call, result)
    read = answer["calls"][4]["result"]["structuredContent"]
    assert [(m["handle"], m["message"]) for m in read["messages"]] == [("legacy", "from mcp 1.x")]


def test_stdio(tmp_path: Path, nats_server: NatsServer, mcp1_client: Mcp1Client) -> None:
    env = isolated_env(tmp_path, NATS_URL=nats_server.url)
    spec = {"transport": "stdio", "command": nats_mcp_exe(), "args": ["serve"], "env": env, "cwd": str(tmp_path)}
    check(mcp1_client.run(tmp_path, spec))


async def test_http(tmp_path: Path, nats_server: NatsServer, mcp1_client: Mcp1Client) -> None:
    key, _ = await api_key(tmp_path, nats_server.url, "mcp1", "agent")
    async with serving(tmp_path, "mcp1", nats_server.url) as server:
        spec = {"transport": "http", "url": server.url, "bearer": key}
        check(await asyncio.to_thread(mcp1_client.run, tmp_path, spec))
