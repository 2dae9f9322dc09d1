"""`nats-mcp token`: the command-line boundary of Development tokens."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Development tokens: issue a signed JWT for tests and the quick start (dev only).", no_args_is_help=True
)
