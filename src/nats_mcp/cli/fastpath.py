"""The console script's stdio fast path: `nats-mcp [globals] serve [--transport stdio]` without the Typer app.

A stdio server is spawned by its client for every session and the client waits for its first answers, so this one
command skips building the command line (Typer, rich and every command module) and, when the start-up cache
(transports/startup_cache.py) has this process's answers, answers the handshake at once on a thread
(transports/stdio_front.py) while settings, the SDK and the server load on the main thread. Only the options below
are read by hand; any other argument (``--help``, another transport, a typo) takes the Typer path, so usage errors
read and exit exactly as before. Errors after parsing (settings, policy) come from the same code either way
(cli/serve_cmd.py's ``serve_command``).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("nats_mcp.serve")

GLOBAL_OPTIONS = {
    "--config": "config",
    "--project-path": "project_path",
    "--nats-url": "nats_url",
    "--namespace": "namespace",
    "--log-level": "log_level",
    "--log-format": "log_format",
    "--set": "set",
}
"""The root command's options that take a value (cli/app.py ``root``), by the name ``build_state`` takes."""


@dataclass
class Plan:
    """A stdio `serve` command line, read."""

    config: Path | None = None
    sets: list[str] = field(default_factory=list)
    flags: dict[str, str] = field(default_factory=dict)
    transport: str | None = None
    metrics_port: int | None = None


def _options(args: list[str]) -> list[tuple[str, str]] | None:
    """``--name value`` and ``--name=value`` pairs, or None for anything else (a flag, a positional)."""
    pairs = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            return None
        if "=" in arg:
            name, value = arg.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            name, value = arg, args[i + 1]
            i += 2
        else:
            return None
        if not value:
            return None
        pairs.append((name, value))
    return pairs


def stdio_plan(argv: list[str], environ: dict[str, str] | None = None) -> Plan | None:
    """The plan of ``argv`` if it is a stdio `serve` with only options this module reads; else None (Typer's)."""
    if "serve" not in argv:
        return None
    at = argv.index("serve")
    before, after = _options(argv[:at]), _options(argv[at + 1 :])
    if before is None or after is None:
        return None
    plan = Plan()
    for name, value in before:
        key = GLOBAL_OPTIONS.get(name)
        if key is None:
            return None
        if key == "config":
            plan.config = Path(value)
        elif key == "set":
            plan.sets.append(value)
        else:
            plan.flags[key] = value
    for name, value in after:
        if name == "--transport" and value == "stdio":
            plan.transport = value
        elif name == "--metrics-port" and value.isdigit():
            plan.metrics_port = int(value)
        else:
            return None
    env = os.environ if environ is None else environ
    if plan.config is None and env.get("NATS_MCP_CONFIG"):
        plan.config = Path(env["NATS_MCP_CONFIG"])  # as Typer's envvar= reads it
    return plan


def serve_fast(plan: Plan, argv: list[str]) -> None:
    """Serve ``plan``: the front first if the cache answers, then the server as `serve` builds it."""
    from nats_mcp.cli.stdio_start import Startup
    from nats_mcp.transports import startup_cache
    from nats_mcp.transports.stdio_front import Front, pipes_usable

    startup: Startup | None = None
    # A test run's fixture tools (api/fixtures.py) come from the checkout's tests/, which the key does not cover.
    if pipes_usable() and not os.environ.get("NATS_MCP_TEST_FIXTURES"):
        try:
            key = startup_cache.cache_key(argv)
            entry = startup_cache.load(key)
        except Exception:  # no working directory, no home, a file gone mid-walk: serve without the cache
            log.debug("no start-up cache", exc_info=True)
        else:
            startup = Startup(key, Front(entry) if entry is not None else None)
            if startup.front is not None:
                startup.front.start()
    import typer

    from nats_mcp.cli.common import build_state
    from nats_mcp.cli.serve_cmd import serve_command

    try:
        serve_command(
            build_state(plan.config, plan.sets, **plan.flags),
            transport=plan.transport,
            metrics_port=plan.metrics_port,
            startup=startup,
        )
    except typer.Exit as exc:  # what Typer's standalone mode does with it
        sys.exit(exc.exit_code)
