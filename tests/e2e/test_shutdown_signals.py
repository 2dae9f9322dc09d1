"""SIGTERM and SIGINT are clean shutdowns: the agent is marked offline and its lease is given back."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer
from tests.support.stdio import RawStdioAgent, agent, ok

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_marks_offline(tmp_path: Path, nats_server: NatsServer, sig: signal.Signals) -> None:
    project = tmp_path / "victim"
    project.mkdir()
    env = isolated_env(tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE="team-sig", MCP_PROJECT_PATH=str(project))
    with (tmp_path / "victim.log").open("w") as errlog:
        proc = subprocess.Popen(
            [nats_mcp_exe(), "serve"],
            env=env,
            cwd=project,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
        )
        try:
            raw = RawStdioAgent(proc)
            await raw.start()
            result = await raw.request(
                "tools/call", {"name": "warp_registry_register", "arguments": {"agentType": "x"}}
            )
            guid = result["structuredContent"]["agent"]["guid"]
            proc.send_signal(sig)  # stdin stays open: only the signal ends it
            assert await asyncio.to_thread(proc.wait, 20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    async with agent(tmp_path, nats_server, "observer", "team-sig") as observer:
        entries = (await ok(observer, "warp_registry_discover", includeOffline=True))["agents"]
        assert [(e["guid"], e["status"]) for e in entries if e["guid"] == guid] == [(guid, "offline")]
    # the lease was given back: the same project gets the same GUID again at once
    async with agent(tmp_path, nats_server, "victim", "team-sig") as again:
        assert (await ok(again, "warp_handle_get"))["agentGuid"] == guid
