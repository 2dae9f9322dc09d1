"""`nats-mcp keys`: the command-line boundary of API keys (create, list, revoke) in the deployment's NATS."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from nats_mcp.cli.common import EXIT_USAGE, err, fail, out, print_json, state

if TYPE_CHECKING:
    from nats_mcp.config.settings import Settings
    from nats_mcp.security.authn.apikeys import ApiKeys

app = typer.Typer(
    help="API keys: create, list, revoke (secrets shown once; only salted hashes stored).", no_args_is_help=True
)

T = TypeVar("T")
_Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
_Timeout = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for NATS.")]


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ts is not None else "never"


def _run(settings: Settings, timeout: float, action: Callable[[ApiKeys], Awaitable[T]]) -> T:
    """Connect to NATS as every command does (the embedded server when no URL is set), run ``action``, close."""
    from nats_mcp.bus.connection import NatsConnection
    from nats_mcp.bus.errors import BusError
    from nats_mcp.security.authn.apikeys import ApiKeyError, ApiKeys

    # The supervisor's retry warnings would repeat what the error below says.
    logging.getLogger("nats_mcp.bus").setLevel(logging.ERROR)

    async def main() -> T:
        conn = NatsConnection(settings)
        conn.start()
        try:
            with err.status("connecting to NATS…"):
                if not await conn.wait_connected(timeout):
                    raise conn.unavailable()
            return await action(ApiKeys(conn, watch=False))  # makes and revokes keys, never checks one
        finally:
            await conn.close()

    try:
        return asyncio.run(main())
    except ApiKeyError as exc:
        fail(str(exc))
    except BusError as exc:
        fail(str(exc))
    except Exception as exc:  # nats-py errors: one line, not a traceback
        fail(f"{type(exc).__name__}: {exc}")


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Who the key is for; it becomes the principal's subject.")],
    role: Annotated[list[str], typer.Option("--role", help="A role the key grants (repeat for several).")],
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", help="Limit the key to this namespace (repeat for several).")
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 30d or 12h (default: until revoked).")
    ] = None,
    as_json: _Json = False,
    timeout: _Timeout = 10.0,
) -> None:
    """Make an API key and print it once on stdout (its id and details go to stderr). Only a salted scrypt hash is
    stored: a lost key cannot be shown again; revoke it and make another."""
    from nats_mcp.config.section import duration_seconds
    from nats_mcp.security.authn.apikeys import ApiKeyError, check_new_key

    ttl_s: float | None = None
    if expires is not None:
        try:
            ttl_s = duration_seconds(expires)
        except ValueError as exc:
            fail(f"--expires: {exc}", code=EXIT_USAGE)
        if ttl_s <= 0:
            fail("--expires: the lifetime must be positive", code=EXIT_USAGE)
    try:
        check_new_key(name, role, namespace or None)
    except ApiKeyError as exc:
        fail(str(exc), code=EXIT_USAGE)
    settings = state(ctx).load().settings
    key, record = _run(
        settings, timeout, lambda keys: keys.create(name, role, namespaces=namespace or None, ttl_s=ttl_s)
    )
    if as_json:
        print_json({**record.public(), "key": key})
        return
    sys.stdout.write(key + "\n")
    sys.stdout.flush()
    ns = ", ".join(record.namespaces) if record.namespaces else "any the policy allows"
    err.print(
        f"API key [bold]{record.id}[/] for {record.name}: roles {', '.join(record.roles)}; namespaces {ns}; "
        f"expires {_when(record.expires)}.\n[yellow]Store the key now: it is not shown again.[/]",
        highlight=False,
    )


@app.command("list")
def list_keys(
    ctx: typer.Context,
    as_json: _Json = False,
    timeout: _Timeout = 10.0,
) -> None:
    """List API keys: id, name, roles, namespaces, dates and status (never a secret or a hash)."""
    settings = state(ctx).load().settings
    records = _run(settings, timeout, lambda keys: keys.records())
    rows: list[dict[str, Any]] = [r.public() for r in records]
    if as_json:
        print_json(rows)
        return
    table = Table(title="API keys")
    table.add_column("id", no_wrap=True, min_width=12)  # copied into `keys revoke`: never folded
    for col in ("name", "roles", "namespaces", "created", "expires", "status"):
        table.add_column(col, overflow="fold")
    style = {"active": "green", "expired": "yellow", "revoked": "red"}
    for row in rows:
        table.add_row(
            row["id"],
            row["name"],
            ", ".join(row["roles"]),
            ", ".join(row["namespaces"]) if row["namespaces"] else "*",
            _when(row["created"]),
            _when(row["expires"]),
            f"[{style[row['status']]}]{row['status']}[/]",
        )
    out.print(table)
    if not rows:
        err.print("no API keys yet: `nats-mcp keys create --name NAME --role ROLE`", highlight=False)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key id (12 hex characters, from `keys list`).")],
    timeout: _Timeout = 10.0,
) -> None:
    """Revoke an API key: refused from the next call on, on every server. Revoking twice is fine."""
    settings = state(ctx).load().settings
    record, changed = _run(settings, timeout, lambda keys: keys.revoke(key_id))
    verb = "revoked" if changed else "was already revoked:"
    out.print(f"{verb} {record.id} ({record.name})", highlight=False)
