"""`nats-mcp agents`: the command-line boundary of the agent registry for people (who is there, doing what)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import RenderableType
from rich.text import Text

from nats_mcp.cli.common import out, print_json
from nats_mcp.cli.human import DEFAULT_AGENT, AsAgent, HumanSession, Json, Timeout, run, settings_of
from nats_mcp.cli.tables import Column, fit, show, when

app = typer.Typer(help="The agents registered in this namespace.", no_args_is_help=True)


@app.command("list")
def list_agents(
    ctx: typer.Context,
    capability: Annotated[str | None, typer.Option("--capability", help="Only agents with this capability.")] = None,
    include_offline: Annotated[bool, typer.Option("--all", help="Also agents whose heartbeats stopped.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="At most this many.")] = 100,
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """Agents with their status, capabilities and last heartbeat (exit 0; 4 if NATS is unreachable)."""

    async def action(s: HumanSession) -> dict[str, Any]:
        found = await s.call("registry_discover", capability=capability, includeOffline=include_offline, limit=limit)
        # Your own CLI entry (made private by `work submit`) is you, not an agent you are looking for.
        agents = [a for a in found["agents"] if a["guid"] != s.caller.guid]
        if len(agents) < len(found["agents"]) and isinstance(found.get("total"), int):
            found["total"] -= 1
        return found | {"agents": agents}

    found = run(settings_of(ctx), agent, timeout, action)
    if as_json:
        print_json(found)
        return
    show(out, agents_table(found, out.width))
    if found.get("hasMore"):
        out.print("[dim]more: raise --limit (at most 100) or filter with --capability[/]")


COLUMNS = (
    Column("handle"),
    Column("status"),
    Column("capabilities", rank=1, flexible=True, min_width=20),
    Column("last seen", rank=2),
    Column("tasks", rank=3, justify="right"),
    Column("type", rank=4, flexible=True, min_width=8),
    Column("guid", rank=5),
    Column("host", rank=6, flexible=True, min_width=10),
)
_STATUS_STYLE = {"online": "green", "busy": "yellow", "offline": "dim"}


def agents_table(found: dict[str, Any], width: int, now: datetime | None = None) -> RenderableType:
    """A ``registry_discover`` page as a list ``width`` characters wide at most."""
    rows = [
        (
            a["handle"],
            Text(a["status"], _STATUS_STYLE.get(a["status"], "")),
            ", ".join(a["capabilities"]) or "-",
            when(a["lastHeartbeat"], now),
            str(a["currentTaskCount"]),
            a["agentType"],
            a["guid"],
            a.get("hostname") or "-",
        )
        for a in found["agents"]
    ]
    return fit(f"{found.get('total') or len(found['agents'])} agent(s)", COLUMNS, rows, width)
