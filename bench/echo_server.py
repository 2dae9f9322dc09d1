"""Baseline boundary of the stdio benchmarks: an echo tool on the SDK's low-level Server, over stdio, doing nothing.

Same SDK, server class and transport as `nats-mcp serve`, with no NATS and no work behind the tool.

    python bench/echo_server.py               # speaks MCP on stdin/stdout until stdin closes
    python bench/echo_server.py --mcpserver   # the same tool on the SDK's high-level MCPServer, for comparison

Its one tool, ``echo``, returns its ``text`` as a text block and as ``structuredContent`` that matches a
declared output schema, so the client pays the same result validation as for the real tools.
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

ECHO = types.Tool(
    name="echo",
    description="Return the text it is given.",
    input_schema={
        "type": "object",
        "properties": {"text": {"type": "string", "description": "what to send back"}},
        "required": ["text"],
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
    annotations=types.ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True),
)


async def list_tools(
    _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[ECHO])


async def call_tool(_ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name != ECHO.name:
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"Error: unknown tool {params.name}")], is_error=True
        )
    text = str((params.arguments or {}).get("text", ""))
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content={"text": text})


def build_server() -> Server[Any]:
    return Server("echo", version="0.0.1", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    server = build_server()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def run_mcpserver() -> None:
    """The same echo on MCPServer (decorator API, schemas inferred): what the low-level Server was chosen over."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("echo-mcpserver", version="0.0.1", log_level="WARNING")

    @server.tool(description="Return the text it is given.")
    def echo(text: str) -> str:
        return text

    server.run("stdio")


if __name__ == "__main__":
    import sys

    if "--mcpserver" in sys.argv[1:]:
        run_mcpserver()
    else:
        anyio.run(main)
