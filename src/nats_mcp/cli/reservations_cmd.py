"""`nats-mcp reservations`: the command-line boundary of reservations for people (list, force-release)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from nats_mcp.cli.common import out, print_json
from nats_mcp.cli.human import DEFAULT_AGENT, AsAgent, HumanSession, Json, Timeout, run, settings_of
from nats_mcp.cli.tables import Column, fit, one_line, show, when

app = typer.Typer(help="Reservations of project paths: list, force-release.", no_args_is_help=True)


@app.command("list")
def list_reservations(
    ctx: typer.Context,
    resource: Annotated[
        str | None, typer.Option("--resource", help="Only reservations overlapping this path or glob.")
    ] = None,
    holder: Annotated[str | None, typer.Option("--holder", help="Only this agent's (GUID).")] = None,
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """The namespace's live reservations: who holds which paths, why, until when."""

    async def action(s: HumanSession) -> dict[str, Any]:
        return await s.call("reservations_list", resource=resource, holderGuid=holder)

    found = run(settings_of(ctx), agent, timeout, action)
    if as_json:
        print_json(found)
        return
    show(out, reservations_table(found["reservations"], out.width))


COLUMNS = (
    Column("id"),
    Column("resources", flexible=True, min_width=16),
    Column("holder"),
    Column("mode", rank=2),
    Column("token", rank=3, justify="right"),
    Column("expires", rank=1),
    Column("reason", rank=4, flexible=True, min_width=10),
)


def reservations_table(entries: list[dict[str, Any]], width: int, now: datetime | None = None) -> RenderableType:
    """Reservations as a list ``width`` characters wide at most."""
    rows = [
        (
            r["reservationId"],
            ", ".join(r["resources"]),
            r.get("holderHandle") or r["holderGuid"],
            r["mode"],
            str(r["fencingToken"]),
            when(r["expiresAt"], now),
            one_line(r.get("reason") or "-"),
        )
        for r in entries
    ]
    return fit(f"{len(entries)} reservation(s)", COLUMNS, rows, width)


@app.command("release")
def release(
    ctx: typer.Context,
    reservation_id: Annotated[str, typer.Argument(help="The reservation's id (from `reservations list`).")],
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """Force-release anyone's reservation (the admin operation `reservations`; audited). Exit 3 if unknown."""

    async def action(s: HumanSession) -> dict[str, Any]:
        return await s.call("reservations_force_release", reservationId=reservation_id)

    done = run(settings_of(ctx), agent, timeout, action)
    if as_json:
        print_json(done)
        return
    out.print(f"{reservation_id} of {done['holderGuid']} released ({', '.join(done['resources'])})", highlight=False)
