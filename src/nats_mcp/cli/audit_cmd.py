"""`nats-mcp audit`: the command-line boundary of the audit chain (tail it, follow it, verify it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from nats_mcp.cli.common import EXIT_FAIL, EXIT_OK, err, fail, out, print_json, state

if TYPE_CHECKING:
    from nats_mcp.bus.connection import NatsConnection
    from nats_mcp.config.settings import Settings
    from nats_mcp.security.audit.chain import VerifyResult

app = typer.Typer(
    help="The audit chain: tail it, verify it.\n\n"
    "Every tool call and security event of every nats-mcp server is one record in the deployment's audit "
    "stream (nmcp_audit), chained to the previous record of its server process by hash.",
    no_args_is_help=True,
)

_Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
_Timeout = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for NATS.")]


@contextlib.asynccontextmanager
async def _connected(settings: Settings, timeout: float) -> AsyncIterator[NatsConnection]:
    """A connection to the configured NATS (or the running embedded server — never started just to read)."""
    from nats_mcp.bus.connection import NatsConnection

    if not settings.nats.servers:
        from nats_mcp.bus.embedded import EmbeddedNats

        status = EmbeddedNats.from_settings(settings).status()
        if not status.running:
            fail(
                "no NATS URL is configured and the embedded server is not running: set NATS_URL or run "
                "`nats-mcp nats start`"
            )
    conn = NatsConnection(settings)
    conn.start()
    try:
        if not await conn.wait_connected(timeout):
            reason = conn.last_error.message if conn.last_error else f"no connection within {timeout:g}s"
            hint = conn.last_error.hint if conn.last_error and conn.last_error.hint else "run `nats-mcp doctor`"
            fail(f"cannot connect to NATS: {reason} ({hint})")
        yield conn
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------------------
# tail


def _line(data: dict[str, Any]) -> str:
    """One record as one line of text."""
    who = data.get("principal")
    parts = [str(data.get("time", "?")), f"{data.get('kind', '?'):<14}", f"{data.get('outcome', '?'):<14}"]
    if isinstance(who, dict):
        key = f" key {who['key_id']}" if who.get("key_id") else ""
        parts.append(f"{who.get('subject')}@{who.get('issuer')} ({who.get('method')}{key})")
    parts.append(str(data.get("transport", "?")))
    for name, label in (("peer", "from "), ("tool", ""), ("namespace", "ns ")):
        if data.get(name):
            parts.append(f"{label}{data[name]}")
    if data.get("latency_ms") is not None:
        parts.append(f"{data['latency_ms']:.1f}ms")
    if data.get("count") is not None:
        parts.append(f"count {data['count']}")
    if data.get("reason"):
        parts.append(f"reason: {data['reason']}")
    if data.get("ref"):
        parts.append(f"continues {data['ref']}")
    chain = str(data.get("chain", "?"))
    parts.append(f"[{chain[:8]}#{data.get('seq', '?')}]")
    return " ".join(parts)


def _show(raw: bytes, as_json: bool, subject: str = "") -> None:
    """One record: as stored (``--json``), or as a line ending with its writer (from the subject it came on)."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if as_json:
        line = json.dumps(data, separators=(",", ":")) if isinstance(data, dict) else json.dumps({"invalid": True})
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    elif isinstance(data, dict):
        from nats_mcp.bus.layout import parse_audit_subject

        parsed = parse_audit_subject(subject)
        writer = f" by {parsed[0]}" if parsed and parsed[0] else " by an unknown writer" if parsed else ""
        out.print(_line(data) + writer, markup=False, highlight=False)
    else:
        out.print("(a message that is not an audit record)", markup=False, highlight=False)


async def _tail(settings: Settings, n: int, chain: str | None, follow: bool, as_json: bool, timeout: float) -> None:
    from nats_mcp.security.audit.store import follow as follow_records
    from nats_mcp.security.audit.store import newest

    async with _connected(settings, timeout) as conn:
        try:
            records, last = await newest(conn, n, chain=chain)
        except LookupError as exc:
            fail(str(exc))
        except Exception as exc:
            fail(f"reading the audit stream failed: {_why(exc)}")
        for msg in records:
            _show(msg.data, as_json, msg.subject)
        if follow:
            async for msg in follow_records(conn, last, chain=chain):
                _show(msg.data, as_json, msg.subject)


@app.command("tail")
def tail(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing records as they are written.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line, each record exactly as stored.")
    ] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many of the newest records to show.")] = 20,
    chain: Annotated[str | None, typer.Option("--chain", help="Only this chain (one server process).")] = None,
    timeout: _Timeout = 5.0,
) -> None:
    """Show the newest records of the audit stream (all chains, oldest first), then follow with --follow."""
    from nats_mcp.core.names import InvalidNameError, validate_guid

    if chain is not None:
        try:
            validate_guid(chain, "chain id")
        except InvalidNameError as exc:
            fail(str(exc), code=2)
    settings = state(ctx).load().settings
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(settings, lines, chain, follow, as_json, timeout))


# --------------------------------------------------------------------------------------------------
# verify


def _report(result: VerifyResult, source: str, as_json: bool, verbose: bool) -> None:
    if as_json:
        print_json({**result.as_dict(), "source": source})
        return
    if not result.ok and result.problem is not None:
        out.print(f"[bold red]{result.summary}[/]", highlight=False)
        if result.problem.raw:
            out.print("record:", highlight=False)
            out.print(result.problem.raw, markup=False, highlight=False)
        out.print(f"({source}; {result.records} records read up to this one)", highlight=False)
        return
    out.print(f"[green]{result.summary}[/] ({source})", highlight=False)
    if source.startswith("stream"):
        _writers(result)
    open_chains = result.open_chains
    if open_chains:
        out.print(
            f"{len(open_chains)} of {len(result.chains)} chains have no end record: their server still runs, stopped "
            "without closing the audit log, or lost its last records (keep anchors to tell)",
            highlight=False,
        )
    if verbose and result.chains:
        table = Table(title="audit chains")
        for column in ("chain", "writer", "records", "first", "last", "end"):
            table.add_column(column, overflow="fold")
        for c in result.chains:
            end = "ended" if c.ended else "open"
            table.add_row(c.chain, c.writer or "unknown", str(c.records), c.first_time or "", c.last_time or "", end)
        out.print(table)
        out.print("anchors (keep them elsewhere; --anchor checks a later verification against them):", highlight=False)
        for c in result.chains:
            out.print(f"{c.chain}:{c.last_seq}:{c.head}", markup=False, highlight=False)


def _report_open(result: VerifyResult) -> None:
    """--closed: name every chain without an end record (on stderr, so --json stays one document)."""
    for c in result.chains:
        if not c.ended:
            writer = f", writer {c.writer}" if c.writer else ""
            err.print(
                f"chain {c.chain}{writer}: no end record after seq {c.last_seq} ({c.last_time}): its server still "
                "runs, or it crashed and records it sealed after that one are lost (the audit loss window, "
                "docs/deployment.md)",
                markup=False,
                highlight=False,
            )


def _writers(result: VerifyResult) -> None:
    """Who wrote the chains: the writer token of their subjects (the NATS user's reply prefix), never what the
    records claim; chains stored before writers were named cannot be attributed, and are counted as such."""
    by_writer: dict[str | None, int] = {}
    for c in result.chains:
        by_writer[c.writer] = by_writer.get(c.writer, 0) + 1
    for writer, count in sorted(by_writer.items(), key=lambda item: (item[0] is None, item[0] or "")):
        chains = f"{count} chain{'s' if count != 1 else ''}"
        if writer is None:
            text = (
                f"{chains} on subjects without a writer (stored before writers were named): anyone allowed to "
                "publish to the audit stream then may have written them"
            )
            out.print(text, markup=False, highlight=False)
        else:
            out.print(f"writer {writer}: {chains}", markup=False, highlight=False)


async def _verify_stream(
    settings: Settings, allow_expired: bool, anchors: list[tuple[str, int, str]], timeout: float
) -> VerifyResult | None:
    from nats_mcp.security.audit.store import verify_stream

    async with _connected(settings, timeout) as conn:
        try:
            with err.status("verifying the audit stream…"):
                return await verify_stream(conn, allow_expired_head=allow_expired, anchors=anchors)
        except Exception as exc:
            fail(f"reading the audit stream failed: {_why(exc)}")


def _why(exc: Exception) -> str:
    from nats_mcp.bus.errors import BusError, translate

    bus = exc if isinstance(exc, BusError) else translate(exc)
    return str(bus) if bus is not None else f"{type(exc).__name__}: {exc}"


@app.command("verify")
def verify(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Option("--file", help="Verify this JSONL audit file instead of the stream.")
    ] = None,
    anchor: Annotated[
        list[str] | None,
        typer.Option("--anchor", metavar="CHAIN:SEQ:HASH", help="A record known to belong to its chain (repeatable)."),
    ] = None,
    allow_expired: Annotated[
        bool, typer.Option("--allow-expired", help="Accept chains whose oldest records are gone (stream limits).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list every chain and its anchor.")] = False,
    closed: Annotated[
        bool,
        typer.Option(
            "--closed",
            help="Also fail when a chain has no end record: once its server has stopped, such a chain is one whose "
            "process crashed, and the records it had answered for but not yet stored are lost.",
        ),
    ] = False,
    as_json: _Json = False,
    timeout: _Timeout = 5.0,
) -> None:
    """Verify the audit stream (or a JSONL file): exit 0 if every chain holds, else 1 and the first bad record.

    Each record's hash must recompute, each prev must be the previous record's hash, and seq must run from 1
    without a gap: a record altered, removed, repeated or reordered breaks its chain. In the stream, each chain's
    writer (the NATS user, by the subject it may publish to) is reported, and a chain found under two writers fails.
    With --closed, a chain without an end record fails too: run it when the servers have stopped, and it finds the
    ones that crashed, losing what they had not stored yet.
    """
    from nats_mcp.security.audit.chain import parse_anchor
    from nats_mcp.security.audit.store import verify_file

    try:
        anchors = [parse_anchor(a) for a in anchor or []]
    except ValueError as exc:
        fail(str(exc), code=2)
    if file is not None:
        try:
            result = verify_file(file, allow_expired_head=allow_expired, anchors=anchors)
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror or exc}")
        source = f"file {file}"
    else:
        settings = state(ctx).load().settings
        found = asyncio.run(_verify_stream(settings, allow_expired, anchors, timeout))
        if found is None:
            fail("there is no audit stream (nmcp_audit) on this NATS: nothing was ever audited here, or it was deleted")
        result = found
        source = "stream nmcp_audit"
    _report(result, source, as_json, verbose)
    if closed and result.ok and result.open_chains:
        _report_open(result)
        raise typer.Exit(EXIT_FAIL)
    if not result.ok and result.problem and result.problem.what.startswith("the chain starts at seq"):
        err.print(
            "hint: if the stream has age or size limits, its oldest records expired: use --allow-expired",
            highlight=False,
        )
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAIL)
