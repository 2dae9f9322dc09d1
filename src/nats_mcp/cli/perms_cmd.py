"""`nats-mcp nats-permissions`: the command-line boundary of least-privilege NATS authorization blocks."""

from __future__ import annotations

import typer


def nats_permissions(ctx: typer.Context) -> None:
    """Print the nats-server authorization block a process needs (not built yet)."""
    typer.echo("not built yet", err=True)
    raise typer.Exit(2)
