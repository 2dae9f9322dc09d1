"""`nats-mcp fleet`: the command-line boundary of the fleet coordinator — run it, check a targets file, show status."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from nats_mcp.cli.common import fail, out, print_json, state

if TYPE_CHECKING:
    from nats_mcp.config.settings import Settings
    from nats_mcp.fleet.targets import TargetsDoc

app = typer.Typer(
    help="Start agents when work waits, stop them when idle: the fleet coordinator.", no_args_is_help=True
)
log = logging.getLogger("nats_mcp.fleet")


def _load(file: Path) -> TargetsDoc:
    from nats_mcp.fleet.targets import TargetsError, load_targets

    try:
        return load_targets(file)
    except TargetsError as exc:
        fail(str(exc), code=2)


@app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The targets YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Validate a targets file: exit 0 and a summary if it can be used, exit 2 and the problem if not."""
    doc = _load(file)
    _check_kubernetes(file, doc)
    rows: list[dict[str, Any]] = [
        {"name": t.name, "capabilities": t.capabilities, "min": t.min, "max": t.max, "mechanism": t.mechanism}
        for t in doc.targets
    ]
    if as_json:
        print_json({"file": str(file), "valid": True, "targets": rows})
        return
    out.print(f"{file}: valid; {len(rows)} target(s)", highlight=False)
    table = Table("target", "capabilities", "min", "max", "mechanism")
    for r in rows:
        table.add_row(str(r["name"]), ", ".join(r["capabilities"]), str(r["min"]), str(r["max"]), str(r["mechanism"]))
    out.print(table)


def _check_kubernetes(file: Path, doc: TargetsDoc) -> None:
    """Kubernetes targets need the client installed and a jobTemplate that makes a valid Job (exit 2 if not)."""
    if any(t.kubernetes is not None for t in doc.targets):
        from rich.markup import escape

        from nats_mcp.fleet.kubernetes import problems

        found = problems(doc)
        if found:  # escaped: fail() prints rich markup, which would eat the `[kubernetes]` of the install hint
            fail(escape(f"{file}: " + "; ".join(found)), code=2)


def _nats_env(settings: Settings, config_file: Path | None) -> dict[str, str]:
    """What an agent needs to reach the same NATS and namespace (credentials come by the inherited environment or
    the same config file, never copied into the command line)."""
    env = {"NATS_MCP_NAMESPACE": settings.resolved_namespace}
    if settings.nats.url:
        env["NATS_URL"] = settings.nats.url
    if config_file is not None:
        env["NATS_MCP_CONFIG"] = str(config_file.resolve())
    return env


async def _run(
    settings: Settings,
    doc: TargetsDoc,
    config_file: Path | None,
    tick_s: float,
    lease_s: float,
    metrics_port: int | None,
) -> None:
    import os

    from nats_mcp.fleet.engine import EnvFor, FleetEngine
    from nats_mcp.fleet.local import LocalMechanism
    from nats_mcp.fleet.mechanism import Mechanism
    from nats_mcp.fleet.metrics import FleetMetrics
    from nats_mcp.fleet.ssh import SshMechanism
    from nats_mcp.fleet.webhook import WebhookMechanism
    from nats_mcp.observe.exposition import MetricsListener
    from nats_mcp.runtime import Runtime
    from nats_mcp.security.policy import Policy

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    local = LocalMechanism({t.name: t.local for t in doc.targets if t.local is not None})
    ssh = SshMechanism({t.name: t.ssh for t in doc.targets if t.ssh is not None})
    webhook = WebhookMechanism({t.name: t.webhook for t in doc.targets if t.webhook is not None})
    mechanisms: dict[str, Mechanism] = {"local": local, "ssh": ssh, "webhook": webhook}
    if kube := {t.name: t.kubernetes for t in doc.targets if t.kubernetes is not None}:
        from nats_mcp.fleet.kubernetes import KubernetesMechanism

        mechanisms["kubernetes"] = KubernetesMechanism(kube, dict(os.environ))
    metrics = FleetMetrics()
    listener = None
    async with Runtime(settings, Policy.load(None), transport="cli", observe=False) as runtime:
        if not await runtime.coordinator.wait_ready(settings.nats.connect_timeout_s + 10):
            why = runtime.coordinator.setup_error or runtime.conn.unavailable()
            fail(f"cannot reach NATS or set up the namespace: {why}")
        if metrics_port is not None:
            listener = MetricsListener(metrics, "127.0.0.1", metrics_port, settings.observe.metrics.allow_from)
            await listener.start()
        engine = FleetEngine(
            runtime.coordinator,
            doc,
            mechanisms,
            runtime.audit,
            metrics,
            EnvFor(_nats_env(settings, config_file), dict(os.environ)),
            tick_s=tick_s,
            lease_ttl_s=lease_s,
        )
        log.info("fleet coordinator %s over %d target(s)", engine.id, len(doc.targets))
        try:
            await engine.run(stop)
        finally:
            await webhook.close()
            if listener is not None:
                await listener.close()


@app.command("run")
def run(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The targets YAML file.")],
    tick: Annotated[float, typer.Option(help="Seconds between decision rounds.", min=0.05, max=60)] = 0.5,
    lease: Annotated[
        float,
        typer.Option(
            help="Seconds the active coordinator's lease lasts without renewal (failover time).", min=1, max=300
        ),
    ] = 3.0,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve /metrics on 127.0.0.1:PORT (0: any free port).")
    ] = None,
) -> None:
    """Run a fleet coordinator: one of any number running acts (KV lease), the others take over if it dies."""
    import os

    from nats_mcp.fleet.ssh import SshMechanism
    from nats_mcp.fleet.targets import TargetsError, resolve_env
    from nats_mcp.observe.logging import setup_logging

    doc = _load(file)
    _check_kubernetes(file, doc)
    for target in doc.targets:  # a missing variable or unreadable file now, not at the first start
        try:
            if target.local is not None:
                resolve_env(target.local, dict(os.environ))
            if target.ssh is not None:
                resolve_env(target.ssh, dict(os.environ))
            if target.webhook is not None:
                resolve_env(target.webhook, dict(os.environ))
                target.webhook.secret.read("webhook secret", dict(os.environ))
            if target.kubernetes is not None:
                from nats_mcp.fleet.kubernetes import resolve_values

                resolve_values(target.kubernetes, dict(os.environ))
        except TargetsError as exc:
            fail(f"{file}: target {target.name}: {exc}", code=2)
    unreadable = SshMechanism({t.name: t.ssh for t in doc.targets if t.ssh is not None}).check_files()
    if unreadable:
        fail(f"{file}: {'; '.join(unreadable)}", code=2)
    cli = state(ctx)
    settings = cli.load().settings
    setup_logging(settings.logging)
    if lease <= tick:
        fail("--lease must be longer than --tick (the leader renews its lease every round)", code=2)
    asyncio.run(_run(settings, doc, cli.config_file, tick, lease, metrics_port))


NO_FLEET = "no fleet has run in this namespace"


async def _status(settings: Settings) -> dict[str, Any]:
    """Read only: a namespace without the fleet bucket reads as no fleet (the bucket is not created)."""
    from nats_mcp.bus.connection import NatsConnection
    from nats_mcp.bus.layout import Layout
    from nats_mcp.fleet.view import pending_for, read_fleet

    conn = NatsConnection(settings)
    conn.start()
    try:
        if not await conn.wait_connected(settings.nats.connect_timeout_s):
            fail(f"cannot reach NATS: {conn.unavailable()}; try `nats-mcp doctor`")
        layout = Layout(settings.resolved_namespace)
        fleet = await read_fleet(conn, layout, time.time())
        if fleet is None:
            return {"namespace": layout.namespace, "fleet": False, "message": NO_FLEET}
        queues = await _queues(conn, settings)
    finally:
        await conn.close()
    pending: dict[str, dict[str, int]] = {}
    for (capability, _), (waiting, taken) in queues.items():
        counts = pending.setdefault(capability, {"pending": 0, "inFlight": 0})
        counts["pending"] += waiting
        counts["inFlight"] += taken
    for target in fleet["targets"]:  # the view counted none: the queues were read after it
        target["pending"] = pending_for(target, queues)
    return {"namespace": layout.namespace, "fleet": True, **fleet, "pending": pending}


async def _queues(conn: Any, settings: Settings) -> dict[tuple[str, str | None], tuple[int, int]]:
    """(pending, in flight) per (capability, work boundary), every boundary (the people's view, as the dashboard's)."""
    from nats_mcp.bus.layout import Layout
    from nats_mcp.coord.work.service import WorkService
    from nats_mcp.coord.work.views import WorkViews

    views = WorkViews(WorkService(conn, settings, Layout(settings.resolved_namespace)))
    return await views.boundary_counts()


@app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Targets, their live instances, pending work per capability and the recent decisions of the active coordinator."""
    snap = asyncio.run(_status(state(ctx).load().settings))
    if as_json:
        print_json(snap)
        return
    if not snap["fleet"]:
        out.print(f"namespace {snap['namespace']}: {NO_FLEET}", highlight=False)
        return
    leader = snap["leader"]
    if leader is None:
        out.print("active coordinator: none yet", highlight=False)
    else:
        lease = leader["leaseExpiresInS"]
        held = f"lease {lease:g}s left" if leader["active"] else "lease expired or released"
        out.print(f"coordinator: {leader['id']} on {leader.get('host')} ({held})", highlight=False)
    table = Table("target", "capabilities", "min", "max", "live", "starting", "pending")
    for t in snap["targets"]:
        table.add_row(
            t["name"],
            ", ".join(t["capabilities"]),
            str(t["min"]),
            str(t["max"]),
            str(t["live"]),
            str(t["starting"]),
            str(t["pending"]),
        )
    out.print(table)
    recent = Table("when", "target", "action", "instance", "reason")
    for d in snap["decisions"]:
        recent.add_row(
            time.strftime("%H:%M:%S", time.gmtime(d["at"])),
            d["target"],
            d["action"] + ("" if d["ok"] else "!"),
            d["instance"] or "-",
            d["reason"],
        )
    out.print(recent)
