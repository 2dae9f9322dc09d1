"""`nats-mcp channels`: the command-line boundary of channels for people (read, follow, send)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from nats_mcp.cli.common import err, out, print_json
from nats_mcp.cli.human import DEFAULT_AGENT, AsAgent, HumanSession, Json, Timeout, run, settings_of

app = typer.Typer(help="Read, follow and post to channels.", no_args_is_help=True)
FOLLOW_POLL_S = 0.5


def _line(m: dict[str, Any]) -> str:
    return f"[dim]{m['sequence']:>6} {m['timestamp']}[/] [bold]{escape(m['handle'])}[/]: {escape(m['message'])}"


@app.command("read")
def read(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The channel.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="The newest this many messages.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new messages until Ctrl-C.")] = False,
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """The newest messages of a channel, oldest first; --follow keeps printing new ones (with --json: one JSON
    object per line)."""

    async def action(s: HumanSession) -> None:
        page = await s.call("channels_read", channel=name, limit=limit)
        messages = sorted(page["messages"], key=lambda m: m["sequence"])
        if as_json and not follow:
            print_json(page)
            return
        for m in messages:
            show(m)
        if not messages and not as_json:
            # On stderr, so stdout stays the messages alone (empty) for a script reading it.
            waiting = " yet; waiting for new ones (Ctrl-C stops)" if follow else ""
            err.print(f"no messages in #{escape(name)}{waiting}", highlight=False)
        if not follow:
            return
        last = max((m["sequence"] for m in messages), default=0)
        if not last:  # nothing yet (or all expired): follow from the channel's end
            status = await s.call("channels_status", channel=name)
            last = max((c["lastSequence"] for c in status["channels"]), default=0)
        while True:
            page = await s.call("channels_read", channel=name, afterSequence=last, limit=100)
            for m in page["messages"]:
                show(m)
                last = max(last, m["sequence"])
            if not page.get("hasMore"):
                await asyncio.sleep(FOLLOW_POLL_S)

    def show(m: dict[str, Any]) -> None:
        if as_json:
            sys.stdout.write(json.dumps(m) + "\n")
            sys.stdout.flush()
        else:
            out.print(_line(m), highlight=False)

    run(settings_of(ctx), agent, timeout, action)


@app.command("send")
def send(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The channel.")],
    text: Annotated[str, typer.Argument(help="The message (Markdown); - reads it from standard input.")],
    as_json: Json = False,
    agent: AsAgent = DEFAULT_AGENT,
    timeout: Timeout = 10.0,
) -> None:
    """Post a message as your agent (its handle is its name unless it set one)."""
    message = sys.stdin.read() if text == "-" else text

    async def action(s: HumanSession) -> dict[str, Any]:
        await s.ensure_handle()
        return await s.call("channels_send", channel=name, message=message)

    sent = run(settings_of(ctx), agent, timeout, action)
    if as_json:
        print_json(sent)
    else:
        out.print(f"sent to #{escape(name)} as {escape(sent['handle'])} (sequence {sent['sequence']})", highlight=False)
