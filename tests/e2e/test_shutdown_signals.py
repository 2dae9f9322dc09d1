"""SIGTERM and SIGINT are clean shutdowns: the agent is marked offline and its lease is given back."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_coordination_stdio import agent, ok
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer

pytestmark = pytest.mark.slow


class RawStdioAgent:
    """`nats-mcp serve` driven with raw JSON-RPC lines (2025-11-25 handshake), so the test holds the process."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.next_id = 0

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        self._send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.to_thread(self.proc.stdout.readline)
            assert line, "the server closed stdout"
            message = json.loads(line)
            if message.get("id") == self.next_id:
                result: dict[str, Any] = message["result"]
                return result

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    async def start(self) -> None:
        await self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "signal-test", "version": "1"},
            },
        )
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})


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
