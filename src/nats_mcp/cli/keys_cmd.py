"""`nats-mcp keys`: the command-line boundary of API keys."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="API keys: create, list, revoke (secrets shown once; only salted hashes stored).", no_args_is_help=True
)
