"""The `nats-mcp` console script: a stdio `serve` straight to the server (cli/fastpath.py), all else through Typer.

``app`` (the Typer application, cli/app.py) is built on first use: building it imports Typer, rich and every
command module, which a stdio server spawned for each client session does not need; any other command line gets a
root with only the command it names (cli/app.py ``for_argv``).
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
    pause_gc()
    from nats_mcp.cli.app import for_argv

    for_argv(argv)()


GC_PAUSE_S = 2.0
"""How long a command runs before the cyclic garbage collector resumes."""


def pause_gc() -> None:
    """No cyclic garbage collection while a command starts: its imports and set-up make ~10^5 objects that live
    as long as the process, and the collector kept re-scanning them (~150 passes, 50 ms of `agents list`'s 500;
    issue 22). Reference counting still frees everything else. A command that ends sooner never collects; one that
    runs on (serve, dashboard, top, --follow, watch) gets the collector back after GC_PAUSE_S, with what exists by
    then frozen (``gc.freeze``: its later passes skip the start-up objects)."""
    import gc
    import threading

    def resume() -> None:
        gc.freeze()
        gc.enable()

    gc.disable()
    timer = threading.Timer(GC_PAUSE_S, resume)
    timer.daemon = True  # never keeps a finished command's process alive
    timer.start()


if __name__ == "__main__":  # pragma: no cover
    run()
