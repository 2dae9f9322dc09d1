"""`nats-mcp audit`: the command-line boundary of The audit chain."""

from __future__ import annotations

import typer

app = typer.Typer(help="The audit chain: tail it, verify it.", no_args_is_help=True)
