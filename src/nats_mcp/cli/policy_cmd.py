"""`nats-mcp policy`: the command-line boundary of Authorization policy files."""

from __future__ import annotations

import typer

app = typer.Typer(help="Authorization policy files: check one.", no_args_is_help=True)
