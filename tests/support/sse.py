"""Raw MCP over streamable HTTP (protocol 2025-11-25 sessions) and SSE parsing, for tests that watch the wire."""

from __future__ import annotations

import json
from typing import Any

import httpx2

from tests.support.http_server import INIT, MCP_HEADERS

INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def sse_events(text: str) -> list[dict[str, str]]:
    """The events of a raw SSE body, each as its fields (``data`` lines joined); a field-only block (``retry:``)
    is an event too."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            if name and not name.startswith(" "):
                value = value.removeprefix(" ")
                fields[name] = fields[name] + "\n" + value if name in fields else value
        if fields:
            events.append(fields)
    return events


async def next_event(lines: Any) -> dict[str, str] | None:
    """The next event of a streaming SSE response's ``aiter_lines()``; None once the stream has ended.

    A block of comment lines only (a keep-alive ``: ping``, sent while a call waits long) is no event: skipped."""
    block: list[str] = []
    async for line in lines:
        if not line and block:
            events = sse_events("\n".join(block))
            block = []
            if events:
                return events[0]
        if line:
            block.append(line)
    events = sse_events("\n".join(block))
    return events[0] if events else None


def call(request_id: int, tool: str, **arguments: Any) -> dict[str, Any]:
    """A ``tools/call`` request."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


async def open_session(hc: httpx2.AsyncClient, url: str) -> dict[str, str]:
    """Initialize a 2025-11-25 session; the headers its later requests carry."""
    opened = await hc.post(url, json=INIT, headers=MCP_HEADERS)
    assert opened.status_code == 200, opened.text
    headers = dict(MCP_HEADERS, **{"mcp-session-id": opened.headers["mcp-session-id"]})
    headers["mcp-protocol-version"] = "2025-11-25"
    done = await hc.post(url, json=INITIALIZED, headers=headers)
    assert done.status_code == 202, done.text
    return headers


def answer(events: list[dict[str, str]]) -> dict[str, Any]:
    """The JSON-RPC answer among a stream's events (the one event whose data is a response)."""
    found = [json.loads(e["data"]) for e in events if e.get("data")]
    answers = [m for m in found if "result" in m or "error" in m]
    assert len(answers) == 1, events
    result: dict[str, Any] = answers[0]
    return result


def answer_of(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC answer of a POST: its JSON body (a quick call, transports/http/plain.py) or its one SSE answer."""
    if response.headers.get("content-type", "").startswith("application/json"):
        body: dict[str, Any] = response.json()
        return body
    return answer(sse_events(response.text))
