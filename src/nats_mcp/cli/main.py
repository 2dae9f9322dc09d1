"""The `nats-mcp` console script: a stdio `serve` straight to the server (cli/fastpath.py), all else through Typer.

``app`` (the Typer application, cli/app.py) is built on first use: building it imports Typer, rich and every
command module, which a stdio server spawned for each client session does not need.
"""

from __future__ import annotations

import sys
from typing import Any


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from nats_mcp.cli.app import app

    return app


def run() -> None:
    """Console-script entry point."""
    from nats_mcp.cli.deferred import defer_packages

    defer_packages()  # this process only: the SDK's and aiohttp's package __init__ wait for first use
    from nats_mcp.cli.fastpath import serve_fast, stdio_plan

    argv = sys.argv[1:]
    plan = stdio_plan(argv)
    if plan is not None:
        serve_fast(plan, argv)
        return
    from nats_mcp.cli.app import app

    app()


if __name__ == "__main__":  # pragma: no cover
    run()
