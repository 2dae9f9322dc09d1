"""`nats-mcp serve`: run the MCP server on a transport, with NATS supervised in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

import typer

from nats_mcp.cli.common import fail, state
from nats_mcp.config import Settings
from nats_mcp.observe.logging import setup_logging

log = logging.getLogger("nats_mcp.serve")


async def _serve(settings: Settings) -> None:
    # Imported here: the SDK costs ~0.75 s to import, which no other command should pay.
    from nats_mcp.bus.connection import NatsConnection
    from nats_mcp.mcp.server import build_server
    from nats_mcp.transports.stdio import serve_stdio

    # MCP is answered at once; NATS connects (or keeps retrying) beside it.
    async with NatsConnection(settings):
        await serve_stdio(build_server())


def serve(
    ctx: typer.Context,
    transport: Annotated[
        str | None, typer.Option(help="stdio (default); http and grpc arrive with their issues.")
    ] = None,
) -> None:
    """Serve the MCP tools (stdio by default). Starts the embedded NATS if no NATS URL is configured."""
    loaded = state(ctx).load({"transport": transport}, {"transport": "--transport"})
    settings = loaded.settings
    setup_logging(settings.logging)
    if settings.transport != "stdio":
        fail(f"transport {settings.transport!r} is not available in this version; use stdio", code=2)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings))
