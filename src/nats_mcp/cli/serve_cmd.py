"""`nats-mcp serve`: run the MCP server on a transport, with NATS supervised in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Annotated

import typer

from nats_mcp.cli.common import fail, state
from nats_mcp.config import Settings
from nats_mcp.observe.logging import setup_logging
from nats_mcp.security.policy import Policy, PolicyError

log = logging.getLogger("nats_mcp.serve")


async def _serve(settings: Settings, policy: Policy) -> None:
    # Imported here: the SDK costs ~0.75 s to import, which no other command should pay.
    from nats_mcp.bus.connection import NatsConnection
    from nats_mcp.coord.service import Coordinator
    from nats_mcp.mcp.server import build_server, local_security
    from nats_mcp.security.audit import AuditLog
    from nats_mcp.security.guard import Guard
    from nats_mcp.transports.stdio import serve_stdio

    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if main is not None:
            loop.add_signal_handler(sig, main.cancel)  # clean shutdown: the finally below runs
    conn = NatsConnection(settings)
    audit = AuditLog.from_settings(settings.security.audit, conn, transport=settings.transport)
    guard = Guard(settings.security, policy, audit)
    coordinator = Coordinator(conn, settings)
    conn.add_listener(coordinator.on_nats_event)
    # MCP is answered at once; NATS connects (or keeps retrying) beside it.
    conn.start()
    try:
        security = local_security(guard, settings.security, coordinator.layout.namespace)
        await serve_stdio(build_server(coordinator, coordinator.local_caller, settings.tool_prefix, security))
    except asyncio.CancelledError:
        log.info("shutting down on a signal")
    finally:
        await coordinator.close()
        await audit.close()
        await conn.close()


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
    try:
        policy = Policy.load(settings.security.policy_file)
    except PolicyError as exc:
        fail(str(exc), code=2)
    except OSError as exc:
        fail(f"cannot read the policy file {settings.security.policy_file}: {exc.strerror}", code=2)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings, policy))
