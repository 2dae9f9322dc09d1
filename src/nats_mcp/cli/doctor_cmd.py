"""`nats-mcp doctor`: settings and NATS checks in one table, a fix hint per failure, exit 0 only if all pass."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from nats_mcp.cli.common import EXIT_FAIL, EXIT_OK, out, print_json, state
from nats_mcp.core.redact import redact

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per network step.")] = 5.0,
) -> None:
    """Check settings, reachability, authentication, TLS, server version, JetStream and clock skew."""
    from nats_mcp.bus.diagnose import Check, run_checks  # nats-py (+aiohttp) only for commands that talk to NATS
    from nats_mcp.config.loader import ConfigError, load_settings
    from nats_mcp.security.authn.endpoints import probe_all

    st = state(ctx)
    checks: list[Check] = []
    try:
        loaded = load_settings(st.overrides, config_file=st.config_file, flags=st.flags)
    except ConfigError as exc:
        checks.append(Check("settings", "fail", redact(str(exc)), "fix the setting named above"))
    else:
        files = ", ".join(loaded.files) or "no files"
        checks.append(Check("settings", "pass", f"valid ({files})"))
        checks += asyncio.run(run_checks(loaded.settings, timeout=timeout))
        # The identity endpoints' keys (pins) as the JWKS and introspection fetches would see them.
        endpoints = asyncio.run(probe_all(loaded.settings, timeout))
        checks += [Check(e.name, e.status, e.detail, e.hint) for e in endpoints]
    ok = all(c.status != "fail" for c in checks)
    if as_json:
        print_json({"ok": ok, "checks": [c.as_dict() for c in checks]})
    else:
        table = Table(title="nats-mcp doctor")
        for col in ("check", "status", "detail", "hint"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(c.name, f"[{_STYLE[c.status]}]{c.status.upper()}[/]", c.detail, c.hint)
        out.print(table)
        out.print("[green]all checks passed[/]" if ok else "[bold red]some checks failed[/]")
    raise typer.Exit(EXIT_OK if ok else EXIT_FAIL)
