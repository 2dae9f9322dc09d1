"""`nats-mcp dlq`: the command-line boundary of the dead-letter queue for people (list, retry, discard)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from nats_mcp.cli.common import out, print_json
from nats_mcp.cli.human import DEFAULT_AGENT, AsAgent, HumanSession, Json, Timeout, run, settings_of

app = typer.Typer(help="Dead-lettered work items: list, retry, discard.", no_args_is_help=True)


@app.command("list")
def list_dead(
    ctx: typer.Context,
    capability: Annotated[str | None, typer.Option("--capability", help="Only this capability's items.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="At most this many.")] = 50,
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """Dead-lettered items with why they failed."""

    async def action(s: HumanSession) -> dict[str, Any]:
        return await s.call("dlq_list", capability=capability, limit=limit)

    page = run(settings_of(ctx), agent, timeout, action)
    if as_json:
        print_json(page)
        return
    table = Table(title=f"{len(page['items'])} dead-lettered item(s)", title_justify="left")
    for column in ("id", "capability", "task", "reason", "attempts", "failed at", "last error"):
        table.add_column(column, no_wrap=column == "id", overflow="fold")
    for entry in page["items"]:
        item = entry["workItem"]
        last = entry["errors"][-1] if entry["errors"] else "-"
        table.add_row(entry["id"], escape(item["capability"]), escape(item["taskId"]), entry["reason"],
                      str(entry["attempts"]), entry["failedAt"], escape(last[:80]))  # fmt: skip
    out.print(table)


@app.command("retry")
def retry(
    ctx: typer.Context,
    item_id: Annotated[str, typer.Argument(help="The dead-lettered item's id.")],
    reset_attempts: Annotated[bool, typer.Option("--reset-attempts", help="Count attempts from zero.")] = False,
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """Put a dead-lettered item back in its queue (atomically: never in both, never lost). Exit 3 if unknown."""

    async def action(s: HumanSession) -> dict[str, Any]:
        return await s.call("dlq_retry", itemId=item_id, resetAttempts=reset_attempts)

    done = run(settings_of(ctx), agent, timeout, action)
    print_json(done) if as_json else out.print(f"{item_id} is back in its queue", highlight=False)


@app.command("discard")
def discard(
    ctx: typer.Context,
    item_id: Annotated[str, typer.Argument(help="The dead-lettered item's id.")],
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """Delete a dead-lettered item for good. Exit 3 if unknown."""

    async def action(s: HumanSession) -> dict[str, Any]:
        return await s.call("dlq_discard", itemId=item_id)

    done = run(settings_of(ctx), agent, timeout, action)
    print_json(done) if as_json else out.print(f"{item_id} discarded", highlight=False)
