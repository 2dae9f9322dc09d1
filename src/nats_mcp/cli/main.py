"""The `nats-mcp` console script: a stdio `serve` straight to the server (cli/fastpath.py), all else through Typer.

``app`` (the Typer application, cli/app.py) is built on first use: building it imports Typer, rich and every
command module, which a stdio server spawned for each client session does not need; any other command line gets a
root with only the command it names (cli/app.py ``for_argv``).
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn


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

    try:
        for_argv(argv)()  # Typer's standalone mode: always ends with SystemExit, its status
    except SystemExit as done:
        exit_now(done.code)


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


def exit_now(code: str | int | None) -> NoReturn:
    """End a finished command at once: its exit handlers run (logging's, coverage's, temporary files'), the output is
    flushed, then ``os._exit``. The interpreter's own teardown (a last garbage collection, then freeing every
    module's objects one by one) took 50-140 ms of a command's 300-500 (issue 22), for nothing a command still
    needs. When something is left for that teardown to do (a non-daemon thread still running, output that cannot
    be flushed), the interpreter does it as ever."""
    import atexit
    import os
    import threading

    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        raise SystemExit(code)  # the interpreter waits for them first
    atexit._run_exitfuncs()  # what the interpreter runs next; each handler once (the list is cleared)
    if isinstance(code, int):
        status = code
    else:
        status = 0 if code is None else 1
        if code is not None:
            sys.stderr.write(f"{code}\n")  # as the interpreter prints a SystemExit's message
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe, a closed file: the interpreter reports it as ever
        raise SystemExit(code) from None
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    run()
