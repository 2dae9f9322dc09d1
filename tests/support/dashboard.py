"""A served dashboard deployment: an HTTP server with keys, as the dashboard tests open it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.http_server import (
    HttpServer,
    api_key,
    serving,
)
from tests.support.natsserver import NatsServer

POLICY = """
version: 1
roles:
  admin:
    tools: ["*"]
    namespaces: ["*"]
    channels: {read: ["*"], send: ["*"]}
    capabilities: {broadcast: ["*"], claim: ["*"]}
    admin: [dlq, dashboard]
  agent:
    tools: ["*"]
    namespaces: ["*"]
    channels: {read: ["*"], send: ["*"]}
    capabilities: {broadcast: ["*"], claim: ["*"]}
    reservations: ["src/**"]
    admin: [dlq]
groups: {admin: [admin], agent: [agent]}  # the role claims of (dev) JWTs
"""


WRONG_KEY = "nmk_0123456789ab_" + "A" * 43


@dataclass
class Deployment:
    server: HttpServer
    admin_key: str
    agent_key: str
    audit_file: Path

    @property
    def dashboard(self) -> str:
        return f"{self.server.base}/dashboard"

    def audit(self) -> list[dict[str, object]]:
        text = self.audit_file.read_text() if self.audit_file.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@contextlib.asynccontextmanager
async def deployment(tmp_path: Path, nats: NatsServer, namespace: str, **env: str) -> AsyncIterator[Deployment]:
    """A `serve --transport http` process with an admin key (role admin) and an agent key (no dashboard)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    admin, _ = await api_key(tmp_path, nats.url, "ops", "admin")
    agent, _ = await api_key(tmp_path, nats.url, "worker", "agent")
    trail = tmp_path / "audit.jsonl"
    settings = {
        "NATS_MCP_NAMESPACE": namespace,
        "NATS_MCP_SECURITY_POLICY_FILE": str(policy),
        "NATS_MCP_SECURITY_AUDIT_FILE": str(trail),
        "NATS_MCP_DASHBOARD_REFRESH_S": "0.5",
        "NATS_MCP_SECURITY_DEV_TOKENS": "true",
        **env,
    }
    async with serving(tmp_path, "dash", nats.url, **settings) as server:
        yield Deployment(server, admin, agent, trail)
