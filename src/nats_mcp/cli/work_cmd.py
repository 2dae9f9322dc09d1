"""`nats-mcp work`: the command-line boundary of work queues for people (submit, list, watch an item to its end)."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import RenderableType
from rich.markup import escape

from nats_mcp.cli.common import EXIT_USAGE, err, fail, out, print_json
from nats_mcp.cli.human import (
    DEFAULT_AGENT,
    EXIT_DEAD,
    EXIT_TIMEOUT,
    AsAgent,
    HumanSession,
    Json,
    Timeout,
    run,
    settings_of,
)
from nats_mcp.cli.tables import Column, fit, one_line, show, when

app = typer.Typer(
    help="Submit work, list queues, watch an item until it completes or is dead-lettered.", no_args_is_help=True
)
WATCH_POLL_S = 0.5


def deadline_of(text: str | None) -> str | None:
    """An ISO 8601 instant as given, or one a duration (``30m``, ``2h``) from now."""
    from nats_mcp.config.section import duration_seconds

    if text is None:
        return None
    try:
        return (datetime.now(UTC) + timedelta(seconds=duration_seconds(text))).isoformat().replace("+00:00", "Z")
    except ValueError:
        pass
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--deadline: {text!r} is neither an ISO 8601 date-time nor a duration such as 30m", code=EXIT_USAGE)
    return text


@app.command("submit")
def submit(
    ctx: typer.Context,
    capability: Annotated[str, typer.Argument(help="The capability a claimer needs.")],
    description: Annotated[str, typer.Argument(help="What needs doing.")],
    priority: Annotated[int, typer.Option("--priority", min=1, max=10, help="1 (lowest) to 10 (highest).")] = 5,
    deadline: Annotated[
        str | None, typer.Option("--deadline", help="ISO 8601 date-time, or a duration from now such as 30m.")
    ] = None,
    task_id: Annotated[str | None, typer.Option("--task-id", help="Your reference (default: a timestamp).")] = None,
    context: Annotated[str | None, typer.Option("--context", help="A JSON object handed to the claimer.")] = None,
    boundary: Annotated[
        str | None,
        typer.Option(
            "--boundary", help="A work boundary (e.g. corporate): only roles granted it see or claim the item."
        ),
    ] = None,
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """Offer a work item; prints its id on stdout (for `work watch`), details on stderr."""
    context_data = None
    if context is not None:
        try:
            context_data = json.loads(context)
        except ValueError as exc:
            fail(f"--context: not JSON ({exc})", code=EXIT_USAGE)
        if not isinstance(context_data, dict):
            fail("--context: a JSON object is needed", code=EXIT_USAGE)
    due = deadline_of(deadline)
    task = task_id or f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}"

    async def action(s: HumanSession) -> dict[str, Any]:
        await s.ensure_registered()
        return await s.call(
            "work_broadcast",
            taskId=task,
            description=description,
            requiredCapability=capability,
            priority=priority,
            deadline=due,
            contextData=context_data,
            **({"boundary": boundary} if boundary is not None else {}),
        )

    item = run(settings_of(ctx), agent, timeout, action)
    if as_json:
        print_json(item)
        return
    out.print(item["workItemId"], highlight=False)
    due_text = f", deadline {item['deadline']}" if item.get("deadline") else ""
    bound = f" (boundary {escape(item['boundary'])})" if item.get("boundary") else ""
    err.print(
        f"queued for {escape(item['capability'])}{bound} at priority {item['priority']}{due_text}", highlight=False
    )


@app.command("list")
def list_items(
    ctx: typer.Context,
    capability: Annotated[str, typer.Argument(help="The capability's queue.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="At most this many items.")] = 50,
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """The queue of a capability in claim order (nothing is claimed), with its counts."""

    async def action(s: HumanSession) -> tuple[dict[str, Any], dict[str, Any]]:
        page = await s.call("work_list", capability=capability, limit=limit)
        return page, await s.call("work_queue_status", capability=capability)

    page, status = run(settings_of(ctx), agent, timeout, action)
    if as_json:
        print_json(page | {"queue": (status["queues"] or [None])[0]})
        return
    q = (status["queues"] or [{"pending": 0, "inFlight": 0, "deadLettered": 0}])[0]
    show(out, items_table(capability, q, page["items"], out.width))


ITEM_COLUMNS = (
    Column("id"),
    Column("prio", justify="right"),
    Column("description", flexible=True, min_width=24),
    Column("offered", rank=1),
    Column("deadline", rank=2),
    Column("task", rank=3, flexible=True, min_width=10),
    Column("attempts", rank=4, justify="right"),
    Column("boundary", rank=5),
)


def items_table(
    capability: str, queue: dict[str, Any], items: list[dict[str, Any]], width: int, now: datetime | None = None
) -> RenderableType:
    """A queue's items in claim order as a list ``width`` characters wide at most."""
    title = (
        f"{capability}: {queue['pending']} pending, {queue['inFlight']} in flight, {queue['deadLettered']} "
        "dead-lettered"
    )
    rows = [
        (
            i["id"],
            str(i["priority"]),
            one_line(i["description"]),
            when(i["offeredAt"], now),
            when(i.get("deadline"), now),
            one_line(i["taskId"]),
            str(i["attempts"]),
            i.get("boundary") or "-",
        )
        for i in items
    ]
    return fit(title, ITEM_COLUMNS, rows, width)


def _describe(status: dict[str, Any]) -> str:
    state = status["state"]
    if state == "claimed":
        progress = f" {status['progress']}%" if status.get("progress") is not None else ""
        note = f" — {status['note']}" if status.get("note") else ""
        return f"claimed by {status['claimer']} (attempt {status['attempts']}){progress}{note}"
    if state == "waiting":
        return "waiting for a claimer"
    if state == "retrying":
        return f"back in the queue after attempt {status['attempts']}"
    if state == "dead_lettered":
        return f"dead-lettered ({status.get('reason')}) after {status['attempts']} attempt(s)"
    return str(state)  # completed, cancelled


def _duration(flag: str, text: str | None) -> float | None:
    """Seconds of a duration option (``10s``, ``5m``); None when not given; a usage error naming ``flag``."""
    if text is None:
        return None
    from nats_mcp.config.section import duration_seconds

    try:
        return duration_seconds(text)
    except ValueError as exc:
        fail(f"{flag}: {exc}", code=EXIT_USAGE)


@app.command("watch")
def watch(
    ctx: typer.Context,
    item_id: Annotated[str, typer.Argument(help="The work item id (from `work submit`).")],
    max_wait: Annotated[
        str | None, typer.Option("--max-wait", help="Give up after this long, e.g. 10m (exit 7).")
    ] = None,
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """A live status line until the item completes (exit 0) or is dead-lettered (exit 6); exit 3 if no such item."""
    limit_s = _duration("--max-wait", max_wait)

    async def action(s: HumanSession) -> dict[str, Any] | None:
        ends = None if limit_s is None else time.monotonic() + limit_s
        shown = ""
        first = True
        with err.status("watching…") as line:
            while True:
                # The first look also makes sure the id exists (an unknown one would read "waiting" for ever);
                # that scans the queues, so later polls only read the item's state.
                look = functools.partial(s.coordinator.work.views.item_status, item_id, must_exist=first)
                first = False
                status = (await s.query("work_status", {"workItemId": item_id}, look)).model_dump()
                text = _describe(status)
                if text != shown:
                    line.update(escape(text))
                    if not as_json:
                        err.print(f"[dim]{datetime.now(UTC):%H:%M:%S}[/] {escape(text)}", highlight=False)
                    shown = text
                if status["state"] in ("completed", "dead_lettered", "cancelled"):
                    return status
                if ends is not None and time.monotonic() >= ends:
                    return None
                await asyncio.sleep(WATCH_POLL_S)

    final = run(settings_of(ctx), agent, timeout, action)
    if final is None:
        fail(f"{item_id} did not finish within {max_wait}", code=EXIT_TIMEOUT)
    if as_json:
        print_json(final)
    elif final["state"] == "completed" and final.get("result") is not None:
        out.print(json.dumps(final["result"], indent=2, ensure_ascii=False), highlight=False)
    if final["state"] in ("dead_lettered", "cancelled"):
        raise typer.Exit(EXIT_DEAD)


def _status_line(status: dict[str, Any]) -> str:
    state = status["status"]
    if state == "claimed":
        progress = f" {status['progress']}%" if status.get("progress") is not None else ""
        asked = " — cancel requested" if status.get("cancelRequested") else ""
        return f"claimed by {status['claimer']} (attempt {status['attempts']}){progress}{asked}"
    if state == "blocked":
        return f"blocked until {len(status['dependsOn'])} item(s) complete: {', '.join(status['dependsOn'])}"
    if state == "dead":
        why = f", dependency {status['dependency']} failed" if status.get("dependency") else ""
        return f"dead-lettered ({status.get('reason')}{why}) after {status['attempts']} attempt(s)"
    return str(state)  # pending, completed, cancelled


@app.command("get")
def get(
    ctx: typer.Context,
    item_id: Annotated[str, typer.Argument(help="The work item id (from `work submit`).")],
    wait: Annotated[
        str | None, typer.Option("--wait", help="Wait up to this long (at most 30s) for it to finish, e.g. 10s.")
    ] = None,
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """Where an item stands (and its result once completed); exit 6 if dead-lettered, 3 if no such item."""
    wait_s = _duration("--wait", wait)
    wait_ms = 0 if wait_s is None else round(wait_s * 1000)
    if not 0 <= wait_ms <= 30_000:
        fail("--wait: at most 30s", code=EXIT_USAGE)

    async def action(s: HumanSession) -> dict[str, Any]:
        return await s.call("work_get", workItemId=item_id, waitMs=wait_ms)

    status = run(settings_of(ctx), agent, timeout, action)
    if as_json:
        print_json(status)
    else:
        err.print(escape(_status_line(status)), highlight=False)
        if status["status"] == "completed" and status.get("result") is not None:
            out.print(json.dumps(status["result"], indent=2, ensure_ascii=False), highlight=False)
    if status["status"] == "dead":
        raise typer.Exit(EXIT_DEAD)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    item_id: Annotated[str, typer.Argument(help="The work item id.")],
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """Cancel an item you submitted (any item, with the policy's `admin: [dlq]`): a pending or blocked one is
    removed, a claimed one is marked and its claimer told on its next call."""

    async def action(s: HumanSession) -> dict[str, Any]:
        if not s.guard.policy.admin_allowed(s.context.principal, "dlq"):
            return await s.call("work_cancel", workItemId=item_id)
        me = s.caller

        async def as_admin() -> dict[str, Any]:
            return {"workItemId": item_id, "status": await s.coordinator.work.cancel(me, item_id, admin=True)}

        return await s.query("work_cancel", {"workItemId": item_id}, as_admin)

    done = run(settings_of(ctx), agent, timeout, action)
    if as_json:
        print_json(done)
    elif done["status"] == "cancel_requested":
        err.print("claimed: its claimer is told it was cancelled on its next call", highlight=False)
    else:
        err.print("cancelled", highlight=False)
