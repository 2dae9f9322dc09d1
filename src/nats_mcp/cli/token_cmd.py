"""`nats-mcp token`: the command-line boundary of development tokens (signed dev JWTs for tests and quick starts)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from nats_mcp.cli.common import EXIT_USAGE, err, fail, state
from nats_mcp.core.names import InvalidNameError, validate_name

app = typer.Typer(
    help="Development tokens: issue a signed JWT for tests and the quick start (dev only).", no_args_is_help=True
)

DEFAULT_AUDIENCE = "urn:nats-mcp:local"  # devtoken.DEV_AUDIENCE, without importing the crypto stack for --help


@app.command("issue")
def issue(
    ctx: typer.Context,
    subject: Annotated[str, typer.Option("--subject", help="Who the token names (its sub claim).")],
    role: Annotated[
        list[str] | None, typer.Option("--role", help="A role or group claim (repeat for several); policy maps it.")
    ] = None,
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", help="Limit the token to this namespace (repeat).")
    ] = None,
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime, e.g. 30m, 1h, 7d (at most 30d).")] = "1h",
    audience: Annotated[
        str, typer.Option("--audience", help="The server it is for: urn:nats-mcp:local or the server's resource URL.")
    ] = DEFAULT_AUDIENCE,
) -> None:
    """Print a signed development JWT on stdout. Trusted only by servers with security.dev_tokens=true.

    Signed by an Ed25519 key made once in the embedded data directory (mode 0600), shared by local processes.

    Issuer urn:nats-mcp:dev, claim "dev": true; --role values go to the roles claim (the policy maps them to roles).
    """
    from nats_mcp.config.section import duration_seconds
    from nats_mcp.security.dev import tokens as devtoken

    settings = state(ctx).load().settings
    try:
        ttl_s = duration_seconds(ttl)
    except ValueError as exc:
        fail(f"--ttl: {exc}", code=EXIT_USAGE)
    try:
        namespaces = [validate_name(ns, "namespace") for ns in namespace or []]
    except InvalidNameError as exc:
        fail(str(exc), code=EXIT_USAGE)
    try:
        key = devtoken.load_or_create_key(devtoken.key_path(settings))
        token = devtoken.issue(key, subject, roles=role or [], namespaces=namespaces, ttl_s=ttl_s, audience=audience)
    except devtoken.DevKeyError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc), code=EXIT_USAGE)
    err.print(
        "[yellow]warning:[/] development token: signed by the local dev key (issuer urn:nats-mcp:dev); "
        "never use it in production.",
        highlight=False,
    )
    if not settings.security.dev_tokens:
        err.print(
            "[yellow]note:[/] this configuration does not trust dev tokens; a server accepts them only with "
            "security.dev_tokens: true (NATS_MCP_SECURITY_DEV_TOKENS=true).",
            highlight=False,
        )
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
