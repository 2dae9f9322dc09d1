"""A raw JSON-RPC client of one 2025-11-25 MCP session over HTTP, for the resend tests (same id, any process)."""

from __future__ import annotations

import json
from typing import Any

import httpx2

from tests.support.http_server import INIT, MCP_HEADERS


def call(request_id: int | str, tool: str, **arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


def answer(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC response of a POST (a JSON body, or the data of the SSE event that carries it)."""
    assert response.status_code == 200, response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        found = [json.loads(d) for d in data if d]  # the priming event has empty data
        replies = [m for m in found if "result" in m or "error" in m]
        assert len(replies) == 1, found
        return replies[0]
    reply: dict[str, Any] = response.json()
    return reply


def code(result: dict[str, Any]) -> str | None:
    """The error code of a tool result (None when it succeeded)."""
    return str(result["_meta"]["io.nats-mcp/error"]["code"]) if result.get("isError") else None


class Session:
    """One 2025-11-25 session of one credential, driven with raw JSON-RPC (requests go to ``url``)."""

    def __init__(self, hc: httpx2.AsyncClient, url: str, headers: dict[str, str] | None = None) -> None:
        self.hc, self.url = hc, url
        self.headers: dict[str, str] = dict(headers or {})

    async def open(self) -> Session:
        opened = await self.hc.post(self.url, json=INIT, headers=MCP_HEADERS)
        assert opened.status_code == 200, opened.text
        session = opened.headers["mcp-session-id"]
        self.headers = dict(MCP_HEADERS, **{"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await self.hc.post(self.url, json=initialized, headers=self.headers)).status_code == 202
        return self

    def at(self, url: str) -> Session:
        """The same session, its requests sent to another server process."""
        return Session(self.hc, url, self.headers)

    call = staticmethod(call)

    async def send(self, request_id: int | str, tool: str, **arguments: Any) -> dict[str, Any]:
        """The ``result`` of one tools/call (asserting it is no protocol error)."""
        reply = answer(await self.hc.post(self.url, json=call(request_id, tool, **arguments), headers=self.headers))
        assert reply["id"] == request_id and "result" in reply, reply
        result: dict[str, Any] = reply["result"]
        return result

    async def ok(self, request_id: int | str, tool: str, **arguments: Any) -> dict[str, Any]:
        """The structured content of a tools/call that must succeed."""
        result = await self.send(request_id, tool, **arguments)
        assert not result.get("isError"), result
        structured: dict[str, Any] = result["structuredContent"]
        return structured
