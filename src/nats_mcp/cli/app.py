"""The `nats-mcp` command line: the root, its global options, and the command groups mounted on it (Typer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperOption

from nats_mcp.cli import (
    agents_cmd,
    audit_cmd,
    bridge_cmd,
    certs_cmd,
    channels_cmd,
    config_cmd,
    dashboard_cmd,
    deps_cmd,
    dlq_cmd,
    doctor_cmd,
    fleet_cmd,
    keys_cmd,
    nats_cmd,
    perms_cmd,
    policy_cmd,
    provision_cmd,
    reservations_cmd,
    serve_cmd,
    token_cmd,
    top_cmd,
    work_cmd,
)
from nats_mcp.cli.common import build_state

_type_of_option = TyperOption.display_type_rich


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """No value placeholder for a flag: ``--json``, not ``--json <bool>``."""
    return None if self.is_flag else _type_of_option(self, ctx)


# typer 0.29's rich help prints every option's type, so a flag (which takes no value) read `--json <bool>`; its
# plain help already skips flags. Mending the one method keeps the rich panels for everything else.
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]

app = typer.Typer(
    name="nats-mcp",
    help="MCP server that lets AI agents coordinate through NATS JetStream.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(nats_cmd.app, name="nats")
app.command("serve")(serve_cmd.serve)
app.command("doctor")(doctor_cmd.doctor)
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(token_cmd.app, name="token")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(policy_cmd.app, name="policy")
app.command("nats-permissions")(perms_cmd.nats_permissions)
app.add_typer(certs_cmd.app, name="certs")
app.command("bridge")(bridge_cmd.bridge)
app.add_typer(agents_cmd.app, name="agents")
app.add_typer(channels_cmd.app, name="channels")
app.add_typer(work_cmd.app, name="work")
app.add_typer(dlq_cmd.app, name="dlq")
app.add_typer(reservations_cmd.app, name="reservations")
app.add_typer(fleet_cmd.app, name="fleet")
app.command("provision")(provision_cmd.provision)
app.command("dashboard")(dashboard_cmd.dashboard)
app.command("top")(top_cmd.top)
app.command("version")(deps_cmd.version)
app.add_typer(deps_cmd.app, name="deps")


def _version(value: bool) -> None:
    if value:
        from nats_mcp import __version__

        typer.echo(f"nats-mcp {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", envvar="NATS_MCP_CONFIG", help="YAML settings file.")
    ] = None,
    project_path: Annotated[
        str | None, typer.Option(help="Project directory (default: the working directory).")
    ] = None,
    nats_url: Annotated[
        str | None, typer.Option(help="NATS server URL(s), comma-separated; no credentials here.")
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace (project) to work in.")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = None,
    log_format: Annotated[str | None, typer.Option(help="json or text.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Set any non-secret setting, e.g. nats.connect_timeout_s=3."),
    ] = None,
) -> None:
    """nats-mcp: agents coordinating through NATS JetStream, behind one security pipeline."""
    ctx.obj = build_state(
        config,
        set_ or [],
        project_path=project_path,
        nats_url=nats_url,
        namespace=namespace,
        log_level=log_level,
        log_format=log_format,
    )
