"""`nats-mcp dlq`: the command-line boundary of the dead-letter queue for people (list, retry, discard)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from nats_mcp.cli.common import out, print_json
from nats_mcp.cli.human import DEFAULT_AGENT, AsAgent, HumanSession, Json, Timeout, run, settings_of
from nats_mcp.cli.tables import Column, fit, one_line, show, when

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
    show(out, dead_table(page["items"], out.width))


DEAD_COLUMNS = (
    Column("id"),
    Column("reason"),
    Column("last error", detail=True),
    Column("capability", rank=1),
    Column("failed", rank=2),
    Column("attempts", rank=3, justify="right"),
    Column("task", rank=4, flexible=True, min_width=10),
)
_ERROR = re.compile(r"\S+ attempt \d+(?: by \S+)?: (?P<why>.*)", re.DOTALL)
"""An error entry as the work service writes it: ``<time> attempt <n> [by <guid>]: <why>``."""


def why(error: str) -> str:
    """The part of an error entry that says why (its time, attempt and claimer come first and are long)."""
    found = _ERROR.fullmatch(error)
    return one_line(found["why"] if found else error)


def dead_table(entries: list[dict[str, Any]], width: int, now: datetime | None = None) -> RenderableType:
    """Dead-lettered items, with why they failed, as a list ``width`` characters wide at most."""
    rows = [
        (
            e["id"],
            e["reason"],
            why(e["errors"][-1]) if e["errors"] else "-",
            e["workItem"]["capability"],
            when(e["failedAt"], now),
            str(e["attempts"]),
            one_line(e["workItem"]["taskId"]),
        )
        for e in entries
    ]
    return fit(f"{len(entries)} dead-lettered item(s)", DEAD_COLUMNS, rows, width)


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
