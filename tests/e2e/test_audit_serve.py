"""A real `nats-mcp serve` leaves a verifiable audit trail: one record per tool call and refusal, no message bodies."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer
from tests.support.stdio import agent, err, ok

SECRET_BODY = "launch codes: 0000-1111"
POLICY = """
roles:
  agent: {tools: ["handle_*", "channels_*", "registry_*"], namespaces: ["*"], channels: {read: ["*"], send: ["*"]}}
"""


@pytest.mark.slow
async def test_serve_audits_every_call_and_refusal(tmp_path: Path, nats_server: NatsServer) -> None:
    trail = tmp_path / "audit.jsonl"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = {"NATS_MCP_SECURITY_AUDIT_FILE": str(trail), "NATS_MCP_SECURITY_POLICY_FILE": str(policy)}
    async with agent(tmp_path, nats_server, "a", "team-audit", **env) as a:
        await ok(a, "warp_handle_set", handle="auditor")
        await ok(a, "warp_channels_send", channel="roadmap", message=SECRET_BODY)
        assert await err(a, "warp_work_broadcast", taskId="t", description="d", requiredCapability="x") == "forbidden"
        assert await err(a, "warp_channels_read", channel="nope") in ("not_found", "invalid_name")
    # the process has exited cleanly: its chain is closed and both sinks hold it
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    calls = [(r["kind"], r["tool"], r["outcome"]) for r in records if r["kind"] != "chain_end"]
    assert calls[:2] == [("tool_call", "handle_set", "ok"), ("tool_call", "channels_send", "ok")]
    assert ("denied", "work_broadcast", "forbidden") in calls
    assert any(tool == "channels_read" and outcome != "ok" for _, tool, outcome in calls)
    assert records[-1]["kind"] == "chain_end"
    assert all(r["principal"]["method"] == "local" for r in records if r.get("principal"))
    assert SECRET_BODY not in trail.read_text()
    env_cli = isolated_env(tmp_path, NATS_URL=nats_server.url)
    for args in (["audit", "verify", "--file", str(trail)], ["audit", "verify"]):
        done = subprocess.run([nats_mcp_exe(), *args], env=env_cli, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "verified" in done.stdout
