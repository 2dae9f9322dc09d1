"""Stdio MCP agents: `nats-mcp serve` over stdio as a client session or raw JSON-RPC lines, and their result helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters, stdio_client

from nats_mcp.api.tools.base import ERROR_META
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer

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
    "warp_work_broadcast",
    "warp_work_claim",
    "warp_work_claim_batch",
    "warp_work_progress",
    "warp_work_complete",
    "warp_work_fail",
    "warp_work_list",
    "warp_work_queue_status",
    "warp_work_get",
    "warp_work_cancel",
    "warp_work_force_cancel",
    "warp_dlq_list",
    "warp_dlq_retry",
    "warp_dlq_discard",
    "warp_reservations_acquire",
    "warp_reservations_renew",
    "warp_reservations_release",
    "warp_reservations_list",
    "warp_reservations_force_release",
}


@contextlib.asynccontextmanager
async def agent(
    tmp_path: Path,
    server: NatsServer,
    name: str,
    namespace: str,
    mode: str = "auto",
    message_handler: Any = None,
    **env: str,
) -> AsyncIterator[Client]:
    """One agent = one `nats-mcp serve` process over stdio, with its own project directory."""
    project = tmp_path / name
    project.mkdir(exist_ok=True)
    settings = {"NATS_URL": server.url, "NATS_MCP_NAMESPACE": namespace, "MCP_PROJECT_PATH": str(project), **env}
    environment = isolated_env(tmp_path, **settings)
    params = StdioServerParameters(command=nats_mcp_exe(), args=["serve"], env=environment, cwd=str(project))
    with (tmp_path / f"{name}.log").open("a") as errlog:
        client = Client(stdio_client(params, errlog=errlog), mode=mode, message_handler=message_handler)  # type: ignore[arg-type]
        async with client:
            yield client


async def ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    assert not result.is_error, f"{tool} failed: {text}"
    assert isinstance(result.structured_content, dict)
    assert text and not text.startswith("Error:")
    return result.structured_content


async def err(client: Client, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, f"{tool} unexpectedly succeeded: {result.structured_content}"
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is None  # it would have to match the tool's outputSchema
    code: str = (result.meta or {})[ERROR_META]["code"]
    assert text.startswith(f"Error: [{code}] ")
    return code


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
