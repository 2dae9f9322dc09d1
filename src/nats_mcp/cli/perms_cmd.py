"""`nats-mcp nats-permissions`: the command-line boundary of least-privilege NATS authorization blocks."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from nats_mcp.cli.common import EXIT_USAGE, fail, print_json, state

if TYPE_CHECKING:
    from nats_mcp.bus.natsperms import Role


def nats_permissions(
    ctx: typer.Context,
    role: Annotated[
        str, typer.Option("--role", help="agent, gateway, fleet (a fleet coordinator) or admin.", show_default=False)
    ],
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            help="The agent's namespace, or each namespace a gateway serves (repeat). Default: the configured one.",
        ),
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            help="The agent's GUID (set identity.agent_id to the same); without it: any agent of the namespace."
        ),
    ] = None,
    inbox_prefix: Annotated[
        str | None, typer.Option(help="Reply prefix the client connects with (default: one per agent or gateway).")
    ] = None,
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="A channel name (repeat). Default: the configured channels.")
    ] = None,
    dm_namespace: Annotated[
        list[str] | None,
        typer.Option("--dm-namespace", help="Another namespace whose agents may be sent DMs (repeat)."),
    ] = None,
    isolate_inbox: Annotated[
        bool | None,
        typer.Option(
            "--isolate-inbox/--shared-inbox",
            help="Deny the stream-wide inbox API: the agent reads only its own inbox, through its own consumer (run it "
            "with nats.isolate_inbox). Default: isolated when --agent is given.",
            show_default=False,
        ),
    ] = None,
    audit: Annotated[bool, typer.Option("--audit/--no-audit", help="Agents append to the audit stream.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (lists, reasons, caveats, the block).")] = False,
) -> None:
    """Print the nats-server permissions block a nats-mcp process of ROLE needs, and nothing more.

    Paste the `permissions: {...}` stanza into that user's entry of the server's authorization block. Streams,
    buckets and consumers are created by the admin role; agents, gateways and fleet coordinators only use them. The
    comments of the block say which inbox prefix the client must connect with and what these permissions cannot
    enforce.
    """
    from nats_mcp.bus.natsperms import ROLES, build_permissions

    if role not in ROLES:
        fail(f"--role must be one of {', '.join(ROLES)}, not {role!r}", code=EXIT_USAGE)
    chosen: Role = role  # narrowed by the check above
    settings = state(ctx).load().settings
    namespaces = list(namespace or [])
    if not namespaces and chosen != "admin":
        namespaces = [settings.resolved_namespace]
    try:
        perms = build_permissions(
            chosen,
            namespaces,
            agent=agent,
            channels=channel if channel else [c.name for c in settings.channels],
            dm_namespaces=dm_namespace or [],
            inbox_prefix=inbox_prefix,
            jetstream_domain=settings.nats.jetstream_domain,
            isolate_inbox=isolate_inbox,
            audit=audit,
        )
    except ValueError as exc:
        fail(str(exc), code=EXIT_USAGE)
    if as_json:
        print_json(perms.to_json())
        return
    sys.stdout.write(perms.render())
    sys.stdout.flush()
