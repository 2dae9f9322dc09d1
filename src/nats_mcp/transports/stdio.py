"""The stdio transport: MCP over stdin/stdout for one local agent (stdout carries only protocol)."""

from __future__ import annotations

import logging
from typing import Any

from mcp.server import Server
from mcp.server.stdio import stdio_server

log = logging.getLogger("nats_mcp.transports.stdio")


async def serve_stdio(server: Server[Any]) -> None:
    """Serve until the client closes stdin."""
    async with stdio_server() as (read_stream, write_stream):
        log.info("serving MCP over stdio")
        await server.run(read_stream, write_stream, server.create_initialization_options())
    log.info("stdio client closed the session")
