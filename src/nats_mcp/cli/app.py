"""The `nats-mcp` command line: the root, its global options, and the command groups mounted on it (Typer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperOption

from nats_mcp.cli.common import build_state, imported

_type_of_option = TyperOption.display_type_rich


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """No value placeholder for a flag: ``--json``, not ``--json <bool>``."""
    return None if self.is_flag else _type_of_option(self, ctx)


# typer 0.29's rich help prints every option's type, so a flag (which takes no value) read `--json <bool>`; its
# plain help already skips flags. Mending the one method keeps the rich panels for everything else.
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]

COMMANDS: dict[str, tuple[str, str | None]] = {
    "config": ("config_cmd", None),
    "nats": ("nats_cmd", None),
    "serve": ("serve_cmd", "serve"),
    "doctor": ("doctor_cmd", "doctor"),
    "keys": ("keys_cmd", None),
    "token": ("token_cmd", None),
    "audit": ("audit_cmd", None),
    "policy": ("policy_cmd", None),
    "nats-permissions": ("perms_cmd", "nats_permissions"),
    "certs": ("certs_cmd", None),
    "bridge": ("bridge_cmd", "bridge"),
    "agents": ("agents_cmd", None),
    "channels": ("channels_cmd", None),
    "work": ("work_cmd", None),
    "dlq": ("dlq_cmd", None),
    "reservations": ("reservations_cmd", None),
    "fleet": ("fleet_cmd", None),
    "provision": ("provision_cmd", "provision"),
    "dashboard": ("dashboard_cmd", "dashboard"),
    "top": ("top_cmd", "top"),
    "version": ("deps_cmd", "version"),
    "deps": ("deps_cmd", None),
}
"""Every command on the root, in the order of the help: its module under cli/ and, for a single command, the
function (None: the module's ``app``, a group)."""


def build(only: str | None = None) -> typer.Typer:
    """The root with every command, or with command ``only`` alone: building the whole tree imports every command
    module and converts ~60 commands to Click (~45 ms of a 400 ms budget), which one command line does not need."""
    app = typer.Typer(
        name="nats-mcp",
        help="MCP server that lets AI agents coordinate through NATS JetStream.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name, (module_name, function) in COMMANDS.items():
        if only is not None and name != only:
            continue
        module = imported(f"nats_mcp.cli.{module_name}")
        if function is None:
            app.add_typer(module.app, name=name)
        else:
            app.command(name)(getattr(module, function))
    app.callback()(root)
    return app


def for_argv(argv: list[str]) -> typer.Typer:
    """The root for this command line: with only the command it names when the global options before that are
    all ones that take a value (cli/fastpath.py's), read as Click reads them; the whole tree for anything else
    (``--help``, ``--version``, no command, an unknown one, a typo), so root help and errors read as ever."""
    from nats_mcp.cli.fastpath import GLOBAL_OPTIONS

    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            return build(arg if arg in COMMANDS else None)
        name, given = arg.split("=", 1)[0], "=" in arg
        if name not in GLOBAL_OPTIONS:
            return build()
        i += 1 if given else 2  # Click takes the next argument as the value, whatever it looks like
    return build()


app: typer.Typer
"""(Declared for type checkers; module ``__getattr__`` below assigns it.)"""


def __getattr__(name: str) -> Any:
    """``app``: the whole command tree, built on first use (tests, docs; the console script uses ``for_argv``)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    global app
    app = build()
    return app


def _version(value: bool) -> None:
    if value:
        from nats_mcp import __version__

        typer.echo(f"nats-mcp {__version__}")
        raise typer.Exit(0)


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
