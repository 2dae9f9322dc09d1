"""The `nats-mcp` human CLI driven as a subprocess, as a newcomer types it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.http_server import run_cli
from tests.support.natsserver import NatsServer

NS = "team-humans"


async def cli(tmp_path: Path, server: NatsServer, *args: str, **env: str) -> tuple[int, str, str]:
    settings = {"NATS_URL": server.url, "NATS_MCP_NAMESPACE": NS, "NATS_MCP_SECURITY_AUDIT_FILE": str(trail(tmp_path))}
    return await run_cli(tmp_path / "human", *args, **(settings | env))


def trail(tmp_path: Path) -> Path:
    return tmp_path / "cli-audit.jsonl"


async def cli_json(tmp_path: Path, server: NatsServer, *args: str) -> Any:
    code, out, error = await cli(tmp_path, server, *args, "--json")
    assert code == 0, error
    return json.loads(out)
