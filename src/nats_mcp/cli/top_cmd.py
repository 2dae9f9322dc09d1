"""`nats-mcp top`: the dashboard's live numbers in the terminal (rich) for SSH sessions; `--once --json` for scripts."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Annotated

import typer

from nats_mcp.cli.common import fail, out, print_json, state

if TYPE_CHECKING:
    from nats_mcp.config.settings import Settings


async def _top(settings: Settings, interval: float, once: bool, as_json: bool) -> None:
    from rich.live import Live

    from nats_mcp.bus.connection import NatsConnection
    from nats_mcp.dashboard.data import Dashboard
    from nats_mcp.dashboard.terminal import render

    conn = NatsConnection(settings)
    conn.start()
    dash = Dashboard(conn, settings)
    try:
        if not await conn.wait_connected(settings.nats.connect_timeout_s):
            fail(f"cannot reach NATS: {conn.unavailable()}; try `nats-mcp doctor`", code=1)
        snap = await dash.build()
        if once:
            if as_json:
                print_json(snap)
            else:
                out.print(render(snap))
            return
        with Live(render(snap), console=out, auto_refresh=False, screen=False) as live:
            while True:
                await asyncio.sleep(interval)
                live.update(render(await dash.build()), refresh=True)
    finally:
        await dash.aclose()
        await conn.close()


def top(
    ctx: typer.Context,
    interval: Annotated[
        float | None, typer.Option(help="Seconds between refreshes (default dashboard.refresh_s).")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --once: the snapshot as JSON (the page's data).")
    ] = False,
) -> None:
    """Live agents, work queues, channels, security events and traffic of the namespace, in the terminal.

    Reads NATS with this command's own settings and credentials (as `nats-mcp audit` does); Ctrl-C stops it."""
    if as_json and not once:
        fail("--json goes with --once", code=2)
    settings = state(ctx).load().settings
    every = interval if interval is not None else settings.dashboard.refresh_s
    if every <= 0:
        fail("--interval must be positive", code=2)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_top(settings, every, once, as_json))
