"""The TypeScript MCP SDK client driven over Node 22 (ts_client.mjs), and its fixture."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.node import node22

SCRIPT = Path(__file__).parents[1] / "e2e" / "ts_client.mjs"


TS_SDK_VERSION = "1.32.2"


RUN_TIMEOUT_S = 90


ERROR_META = "io.nats-mcp/error"


SUCCESS_CALL = {"name": "warp_channels_list", "arguments": {}}


@dataclass(frozen=True)
class TsClient:
    node: str
    modules: str

    def run(self, tmp_path: Path, spec: dict[str, Any]) -> dict[str, Any]:
        """What the SDK returned or threw, per call (the script's one JSON line)."""
        proc = subprocess.run(
            [self.node, str(SCRIPT), self.modules, json.dumps(spec)],
            env=isolated_env(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        assert proc.returncode == 0, f"ts_client.mjs exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        found: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return found

    def stdio(self, tmp_path: Path, nats_url: str, calls: list[dict[str, Any]], **extra: str) -> dict[str, Any]:
        """``extra``: more environment of the server (settings)."""
        env = isolated_env(tmp_path, NATS_URL=nats_url, **extra)
        spec = {"transport": "stdio", "command": nats_mcp_exe(), "args": ["serve"], "env": env, "cwd": str(tmp_path)}
        return self.run(tmp_path, {**spec, "calls": calls})


@pytest.fixture(scope="module")
def ts_client() -> TsClient:
    """Node 22 + the TypeScript SDK, installed on first use (fails, never skips, if that is impossible)."""
    modules = node22("--ts-sdk")
    package = json.loads((Path(modules) / "@modelcontextprotocol" / "sdk" / "package.json").read_text())
    assert package["version"] == TS_SDK_VERSION
    return TsClient(node=node22(), modules=modules)
