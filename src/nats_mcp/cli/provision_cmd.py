"""`nats-mcp provision`: the command-line boundary of making a deployment's NATS resources before its servers run.

Least-privilege server users (``nats-permissions --role gateway|agent``) may use the streams and buckets but not
create them; an operator runs this once per namespace as the admin user (a Kubernetes Job, a CI step). It makes
everything a server would make on first use — channel, inbox, work, events and DLQ streams, the registry,
directory, identity, work-state, reservation, fleet and API-key buckets, the audit and SSE-event streams — with
``nats.replicas``, or brings what exists to the settings. Idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import typer
from rich.table import Table

from nats_mcp.cli.common import fail, out, print_json, state
from nats_mcp.cli.human import exit_code


def provision(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for NATS.")] = 30.0,
) -> None:
    """Create (or bring to the settings) every stream and bucket of this namespace; exit 0 when all exist."""
    settings = state(ctx).load().settings
    from nats_mcp.bus.errors import BusError
    from nats_mcp.coord.errors import CoordError

    logging.getLogger("nats_mcp.bus").setLevel(logging.ERROR)
    try:
        made = asyncio.run(_provision(settings, timeout))
    except (CoordError, BusError) as exc:
        fail(f"{exc.code}: {exc.message}", code=exit_code(exc.code))
    except Exception as exc:  # a permissions violation or another NATS refusal: one line, not a traceback
        fail(f"{type(exc).__name__}: {exc} (run provision as a user that may create streams: the admin user)")
    if as_json:
        print_json({"namespace": settings.resolved_namespace, "resources": made})
        return
    table = Table(
        title=f"namespace {settings.resolved_namespace}: {len(made)} streams and buckets ready", title_justify="left"
    )
    for column in ("stream", "replicas", "messages"):
        table.add_column(column)
    for r in made:
        table.add_row(r["name"], str(r["replicas"]), str(r["messages"]))
    out.print(table)


async def _provision(settings: Any, timeout: float) -> list[dict[str, Any]]:
    from nats_mcp.bus.connection import NatsConnection
    from nats_mcp.bus.setup import ensure_stream
    from nats_mcp.coord.errors import NatsUnavailable
    from nats_mcp.coord.service import Coordinator
    from nats_mcp.security.audit.store import audit_stream_config
    from nats_mcp.security.authn.apikeys import ApiKeys

    conn = NatsConnection(settings)
    coordinator = Coordinator(conn, settings, local_agent=False)
    conn.add_listener(coordinator.on_nats_event)
    conn.start()
    try:
        if not await conn.wait_connected(timeout):
            raise NatsUnavailable(str(conn.unavailable()))
        if not await coordinator.wait_ready(timeout):
            failed = coordinator.setup_error
            raise failed if failed is not None else NatsUnavailable("the setup did not finish in time")
        await coordinator.identity.ensure()
        await coordinator.inbox.ensure(coordinator.layout)
        await ApiKeys(conn).bucket.kv()
        await ensure_stream(conn.jetstream, audit_stream_config(), replicas=conn.replicas)
        if settings.http.sse_resume_s > 0:  # a least-privilege gateway may only open it
            from nats_mcp.transports.http.events import sse_stream_config

            config = sse_stream_config(coordinator.layout, settings.http.sse_resume_s)
            await ensure_stream(conn.jetstream, config, replicas=conn.replicas)
        from nats_mcp.bus.sessions import SessionStore  # the HTTP gateway's sessions (a gateway user may only open it)

        await SessionStore(conn, coordinator.layout, settings.http.session_idle_s).open()
        from nats_mcp.coord.replay import CallRecords  # the records that answer a resent call (HTTP sessions)

        await CallRecords(conn, coordinator.layout).bucket.kv()
        from nats_mcp.bus.kvcache import Bucket  # the fleet coordinator's (a fleet user may only open it)
        from nats_mcp.bus.specs import fleet_bucket

        await Bucket.declared(conn, fleet_bucket(coordinator.layout)).kv()
        ours = (f"nmcp_{coordinator.layout.namespace}_", "KV_nmcp_", "nmcp_audit")
        found = [s for s in await conn.jetstream.streams_info() if s.config.name and s.config.name.startswith(ours)]
        return sorted(
            (
                {"name": s.config.name, "replicas": s.config.num_replicas or 1, "messages": s.state.messages}
                for s in found
            ),
            key=lambda r: str(r["name"]),
        )
    finally:
        await coordinator.close()
        await conn.close()
