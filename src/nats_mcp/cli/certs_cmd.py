"""`nats-mcp certs`: the command-line boundary of development certificates (a CA, server and client certificates)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Development certificates for mTLS (gRPC transport): a CA, a server and clients.", no_args_is_help=True
)
