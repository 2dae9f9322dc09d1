"""`nats-mcp bridge`: the command-line boundary of the stdio-to-gRPC bridge for existing MCP clients."""

from __future__ import annotations

import typer


def bridge(ctx: typer.Context) -> None:
    """Serve MCP over stdio, forwarding everything to a remote nats-mcp gRPC server (not built yet)."""
    typer.echo("not built yet", err=True)
    raise typer.Exit(2)
