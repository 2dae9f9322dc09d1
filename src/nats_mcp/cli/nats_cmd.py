"""`nats-mcp nats`: the command-line boundary of the embedded local nats-server (start, status, stop)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from nats_mcp.bus.embedded import DEFAULT_TIMEOUT, EmbeddedNats, EmbeddedNatsError
from nats_mcp.cli.common import err, fail, out, print_json, state

app = typer.Typer(
    help="Manage the embedded local nats-server used when no NATS URL is configured.\n\n"
    "It listens on 127.0.0.1 only, runs JetStream, keeps its data (and its token, mode 0600) under "
    "$XDG_DATA_HOME/nats-mcp, and is shared by every local nats-mcp process.",
    no_args_is_help=True,
)

_Timeout = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait before giving up.")]
_Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _server(ctx: typer.Context) -> EmbeddedNats:
    loaded = state(ctx).load()
    if loaded.settings.nats.url is not None:
        err.print(
            f"[yellow]warning:[/] nats.url is set (from {loaded.source_of('nats.url')}), so nats-mcp "
            "connects there and does not use the embedded server",
            highlight=False,
        )
    return EmbeddedNats.from_settings(loaded.settings)


@app.command("start")
def start(ctx: typer.Context, timeout: _Timeout = DEFAULT_TIMEOUT, as_json: _Json = False) -> None:
    """Start the embedded server, or reuse the one already running. Prints its URL and pid, never the token."""
    server = _server(ctx)
    try:
        with err.status("starting nats-server…"):
            info = server.ensure_running(timeout)
    except EmbeddedNatsError as exc:
        fail(str(exc))
    if as_json:
        print_json(
            {
                "running": True,
                "url": info.url,
                "pid": info.pid,
                "data_dir": str(info.data_dir),
                "version": info.version,
                "started": info.started,
            }
        )
        return
    verb = "started" if info.started else "already running"
    out.print(f"nats-server {verb}: {info.url} (pid {info.pid}, data {info.data_dir})", highlight=False)


@app.command("status")
def status(ctx: typer.Context, as_json: _Json = False) -> None:
    """Show whether the embedded server runs, its URL, pid and data directory.

    Exits 0 whether or not it runs (read "running" from --json); exits 1 only when the state cannot be read.
    """
    server = _server(ctx)
    try:
        st = server.status()
    except (EmbeddedNatsError, OSError) as exc:
        fail(f"cannot read the embedded server's state: {exc}")
    if as_json:
        print_json(st.as_dict())
        return
    table = Table(title="embedded nats-server", show_header=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    table.add_row("running", "[green]yes[/]" if st.running else "[red]no[/]")
    for key, value in (
        ("url", st.url),
        ("pid", st.pid),
        ("version", st.version),
        ("started at", st.started_at),
        ("data dir", st.data_dir),
        ("note", st.detail),
    ):
        if value is not None:
            table.add_row(key, str(value))
    out.print(table)


@app.command("stop")
def stop(ctx: typer.Context, timeout: _Timeout = DEFAULT_TIMEOUT) -> None:
    """Stop the embedded server (SIGTERM, then SIGKILL). Stopping when it is not running is fine (exit 0)."""
    server = _server(ctx)
    try:
        with err.status("stopping nats-server…"):
            stopped = server.stop(timeout)
    except EmbeddedNatsError as exc:
        fail(str(exc))
    out.print("nats-server stopped" if stopped else "nats-server was not running", highlight=False)
