"""`nats-mcp policy`: the command-line boundary of authorization policy files (check one before deploying it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nats_mcp.cli.common import err, fail, out, print_json

app = typer.Typer(help="Authorization policy files: check one.", no_args_is_help=True)


@app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The policy YAML file.")],
    subject: Annotated[
        str | None, typer.Option(help="Also show what this principal subject may call (with --issuer/--role).")
    ] = None,
    issuer: Annotated[str, typer.Option(help="Issuer of --subject.")] = "local",
    method: Annotated[str, typer.Option(help="Authentication method of --subject: local, jwt, apikey, mtls.")] = "jwt",
    role: Annotated[list[str] | None, typer.Option(help="Roles the principal holds directly.")] = None,
    group: Annotated[list[str] | None, typer.Option(help="Group claims of the principal.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Validate a policy file: exit 0 and a summary if it can be used, exit 2 and the problem if not."""
    from nats_mcp.security.policy import Policy, PolicyError, cross_provider_warnings, parse_policy
    from nats_mcp.security.principal import Principal

    try:
        doc = parse_policy(file.read_text(encoding="utf-8"), str(file))
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", code=2)
    except PolicyError as exc:
        fail(str(exc), code=2)
    policy = Policy(doc, str(file))
    warnings = cross_provider_warnings(doc)
    grants: list[str] | None = None
    if subject is not None:
        from nats_mcp.api.tools.coordination import TOOLS
        from nats_mcp.api.tools.natsops import OPS_TOOLS

        who = Principal(
            subject=subject,
            issuer=issuer,
            method=method,  # type: ignore[arg-type]
            roles=frozenset(role or []),
            groups=frozenset(group or []),
        )
        tools = [(spec.suffix, spec.needs) for spec in TOOLS] + [(spec.suffix, spec.needs) for spec in OPS_TOOLS]
        grants = [name for name, needs in tools if policy.tool_allowed(who, name, needs)]
    if as_json:
        print_json(
            {
                "file": str(file),
                "valid": True,
                "roles": sorted(doc.roles),
                "principals": len(doc.principals),
                "tools": grants,
                "warnings": warnings,
            }
        )
        return
    table = Table("role", "tools", "namespaces", "send to", "claim", "reserve", "admin")
    for name, r in doc.roles.items():
        table.add_row(
            name,
            ", ".join(r.tools) or "-",
            ", ".join(r.namespaces) or "-",
            ", ".join(r.channels.send) or "-",
            ", ".join(r.capabilities.claim) or "-",
            ", ".join(r.reservations) or "-",
            ", ".join(r.admin) or "-",
        )
    out.print(f"{file}: valid; {len(doc.roles)} role(s), {len(doc.principals)} principal rule(s)", highlight=False)
    out.print(table)
    for warning in warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False)
    if grants is not None:
        out.print(f"{subject} may call: {', '.join(grants) or 'nothing (default deny)'}", highlight=False)
