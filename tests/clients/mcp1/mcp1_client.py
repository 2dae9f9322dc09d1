"""Test driver: the Python `mcp` 1.x ClientSession against `nats-mcp serve`, run by .cache/mcp1-venv's python.

    python mcp1_client.py SPEC_JSON

SPEC_JSON: {"transport": "stdio", "command", "args", "env", "cwd"} or {"transport": "http", "url", "bearer"},
plus "calls": [{"name", "arguments"}]. Prints one JSON object: {"protocolVersion", "serverInfo", "tools",
"calls": [{"result": ...} | {"error": ...}]}. A 1.x ClientSession validates each successful result's
structuredContent against the listed outputSchema itself (it raises otherwise), as clients on 1.x meet it.
"""

from __future__ import annotations

import json
import sys
from contextlib import AsyncExitStack
from importlib.metadata import version
from typing import Any

import anyio
import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"mcpVersion": version("mcp"), "calls": []}
    async with AsyncExitStack() as stack:
        if spec["transport"] == "stdio":
            params = StdioServerParameters(
                command=spec["command"], args=spec.get("args", []), env=spec.get("env"), cwd=spec.get("cwd")
            )
            read, write = await stack.enter_async_context(stdio_client(params))
        else:
            headers = {"Authorization": f"Bearer {spec['bearer']}"} if spec.get("bearer") else {}
            http = await stack.enter_async_context(httpx.AsyncClient(headers=headers, trust_env=False, timeout=60))
            read, write, _ = await stack.enter_async_context(streamable_http_client(spec["url"], http_client=http))
        session = await stack.enter_async_context(ClientSession(read, write))
        init = await session.initialize()
        out["protocolVersion"] = init.protocolVersion
        out["serverInfo"] = init.serverInfo.model_dump(mode="json", exclude_none=True)
        out["tools"] = [tool.name for tool in (await session.list_tools()).tools]
        for call in spec.get("calls", []):
            try:
                result = await session.call_tool(call["name"], call.get("arguments", {}))
                out["calls"].append({"result": result.model_dump(mode="json", by_alias=True, exclude_none=True)})
            except Exception as exc:  # what the 1.x client raised, for the test to read
                out["calls"].append({"error": {"type": type(exc).__name__, "message": str(exc)}})
    return out


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, json.loads(sys.argv[1]))))
