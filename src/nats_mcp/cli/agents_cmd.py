"""`nats-mcp agents`: the command-line boundary of the agent registry for people (who is there, doing what)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from nats_mcp.cli.common import out, print_json
from nats_mcp.cli.human import DEFAULT_AGENT, AsAgent, HumanSession, Json, Timeout, run, settings_of

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
    table = Table(title=f"{found.get('total') or len(found['agents'])} agent(s)", title_justify="left")
    for column in ("handle", "type", "status", "capabilities", "tasks", "last seen", "host", "guid"):
        table.add_column(column, no_wrap=column in ("guid", "last seen"))
    for a in found["agents"]:
        style = {"online": "green", "busy": "yellow", "offline": "dim"}.get(a["status"], "")
        table.add_row(a["handle"], a["agentType"], f"[{style}]{a['status']}[/]" if style else a["status"],
                      ", ".join(a["capabilities"]) or "-", str(a["currentTaskCount"]), a["lastHeartbeat"],
                      a.get("hostname") or "-", a["guid"])  # fmt: skip
    out.print(table)
    if found.get("hasMore"):
        out.print("[dim]more: raise --limit (at most 100) or filter with --capability[/]")
