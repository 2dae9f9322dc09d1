"""Client matrix, raw JSON-RPC row: an initialize for each protocol revision a client may ask for, then tools/list,
over stdio (lines to a `nats-mcp serve` child) and streamable HTTP (POSTs with an API key), no SDK in between.

The server speaks all four revisions, so each is answered with itself; a revision it does not know is answered
with its newest handshake revision, as the spec's version negotiation asks (the client then decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.http_server import MCP_HEADERS, api_key, http_client, serving
from tests.support.natsserver import NatsServer, _pdeathsig_preexec
from tests.support.stdio import TOOLS

REVISIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
UNKNOWN = "1999-01-01"
NEWEST_HANDSHAKE = "2025-11-25"
"""What an initialize asking for a revision the server does not know is answered with."""
HEADER_SINCE = "2025-06-18"
"""The first revision whose HTTP clients send MCP-Protocol-Version on every request after initialize."""
CASES = [(revision, revision) for revision in REVISIONS] + [(UNKNOWN, NEWEST_HANDSHAKE)]
READ_TIMEOUT_S = 30


def initialize(revision: str) -> dict[str, Any]:
    params = {"protocolVersion": revision, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


def check(revision: str, expected: str, init: dict[str, Any], tools: dict[str, Any]) -> None:
    assert init["id"] == 1 and "error" not in init, (revision, init)
    result = init["result"]
    assert result["protocolVersion"] == expected, (revision, result)
    assert result["serverInfo"]["name"] == "nats-mcp", (revision, result)
    assert result["capabilities"]["tools"] is not None and result["capabilities"]["resources"]["subscribe"] is True
    assert tools["id"] == 2 and "error" not in tools, (revision, tools)
    assert {tool["name"] for tool in tools["result"]["tools"]} == TOOLS, revision


# ---- stdio ---------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def stdio_serve(tmp_path: Path, nats_url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    with (tmp_path / "serve.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            nats_mcp_exe(),
            "serve",
            env=isolated_env(tmp_path, NATS_URL=nats_url),
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            preexec_fn=_pdeathsig_preexec(),
        )
    try:
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # end of input: the clean stop of a stdio server
        try:
            await asyncio.wait_for(proc.wait(), READ_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def exchange(proc: asyncio.subprocess.Process, message: dict[str, Any]) -> dict[str, Any] | None:
    """Write one line; for a request, read lines until its response (skipping any notification)."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    await proc.stdin.drain()
    if "id" not in message:
        return None
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), READ_TIMEOUT_S)
        assert line, f"serve closed stdout before answering {message['method']}"
        answer: dict[str, Any] = json.loads(line)
        if answer.get("id") == message["id"]:
            return answer


@pytest.mark.parametrize(("revision", "expected"), CASES)
async def test_stdio_initialize(tmp_path: Path, nats_server: NatsServer, revision: str, expected: str) -> None:
    async with stdio_serve(tmp_path, nats_server.url) as proc:
        init = await exchange(proc, initialize(revision))
        await exchange(proc, INITIALIZED)
        tools = await exchange(proc, TOOLS_LIST)
        assert init is not None and tools is not None
        check(revision, expected, init, tools)


# ---- streamable HTTP -----------------------------------------------------------------------------------------------


def body(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC response of a POST: a JSON body, or the SSE stream's message event carrying a response."""
    assert response.status_code == 200, (response.status_code, response.text)
    if response.headers["content-type"].startswith("application/json"):
        found: dict[str, Any] = response.json()
        return found
    for line in response.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            message: dict[str, Any] = json.loads(line[5:])
            if "id" in message:
                return message
    raise AssertionError(f"no JSON-RPC response in the stream:\n{response.text}")


async def test_http_initialize(tmp_path: Path, nats_server: NatsServer) -> None:
    key, _ = await api_key(tmp_path, nats_server.url, "raw", "agent")
    async with serving(tmp_path, "raw", nats_server.url) as server, http_client(key) as hc:
        for revision, expected in CASES:
            response = await hc.post(server.url, json=initialize(revision), headers=MCP_HEADERS)
            init = body(response)
            headers = dict(MCP_HEADERS)
            session = response.headers.get("mcp-session-id")
            if session is not None:
                headers["mcp-session-id"] = session
            if expected >= HEADER_SINCE:
                headers["mcp-protocol-version"] = expected
            sent = await hc.post(server.url, json=INITIALIZED, headers=headers)
            assert sent.status_code == 202, (revision, sent.status_code, sent.text)
            tools = body(await hc.post(server.url, json=TOOLS_LIST, headers=headers))
            check(revision, expected, init, tools)
            if session is not None:  # end the session as a client leaving does
                ended = await hc.delete(server.url, headers=headers)
                assert ended.status_code in (200, 204), (revision, ended.status_code, ended.text)
