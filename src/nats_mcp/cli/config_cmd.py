"""`nats-mcp config`: the effective settings, secrets redacted, with the source of each value."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from nats_mcp.cli import tables
from nats_mcp.cli.common import out, print_json, state

app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
COLUMNS = (
    tables.Column("key"),
    tables.Column("value", flexible=True, min_width=16),
    tables.Column("source", rank=1, flexible=True, min_width=8),
    tables.Column("env", rank=2),
)


@app.command("show")
def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print every setting, where it came from, and its environment variable. Secrets are masked."""
    from nats_mcp.config.loader import effective_settings

    loaded = state(ctx).load()
    rows = effective_settings(loaded)
    if as_json:
        print_json({"settings": rows, "files": loaded.files})
        return
    cells = []
    for row in rows:
        value = row["value"]
        if row["key"] == "channels":
            shown = ", ".join(c["name"] for c in value) + "  (--json for limits)"
        elif isinstance(value, list | dict):
            shown = json.dumps(value)
        else:
            shown = "" if value is None else str(value)
        cells.append((row["key"], shown, row["source"], row["env"]))
    tables.show(out, tables.fit("nats-mcp settings", COLUMNS, cells, out.width))
    if loaded.files:
        out.print("files read: " + ", ".join(loaded.files), highlight=False)
