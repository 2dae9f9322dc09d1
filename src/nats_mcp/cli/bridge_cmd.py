"""`nats-mcp bridge`: the command-line boundary of the stdio-to-gRPC bridge for existing MCP clients.

A local stdio MCP server as far as the client can tell (Claude Code, Claude Desktop, any stdio client): every
JSON-RPC line it writes goes unchanged over one gRPC ``Session`` stream (mutual TLS, optional bearer) to a
remote ``nats-mcp serve --transport grpc``, and every frame the server sends comes back as one line on stdout.
stdout carries nothing else; diagnostics go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nats_mcp.cli.common import err, fail, loopback_host
from nats_mcp.core.pins import parse_pins

if TYPE_CHECKING:
    from nats_mcp.transports.grpc.client import GrpcTarget

MAX_LINE_BYTES = 64 * 1024 * 1024


def bridge(
    grpc_address: Annotated[str, typer.Option("--grpc", help="The remote server, HOST:PORT.", show_default=False)],
    ca: Annotated[Path | None, typer.Option("--ca", help="CA of the server certificate (PEM).")] = None,
    cert: Annotated[Path | None, typer.Option("--cert", help="Client certificate chain (PEM), for mutual TLS.")] = None,
    key: Annotated[Path | None, typer.Option("--key", help="Client private key (PEM).")] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="A file holding a bearer JWT or API key (never on the command line)."),
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Agent name to act as (the policy decides).")] = None,
    server_name: Annotated[
        str | None, typer.Option("--server-name", help="TLS name to expect from the server.")
    ] = None,
    insecure_dev: Annotated[
        bool, typer.Option("--insecure-dev", help="Plaintext, for a server started with --insecure-dev (loopback).")
    ] = False,
    pin: Annotated[
        list[str] | None,
        typer.Option(
            "--pin",
            metavar="sha256/BASE64",
            help="SPKI pin of the server's key (or its CA's); repeat to stage a rotation. Every connection must match.",
        ),
    ] = None,
) -> None:
    """Serve MCP over stdio, forwarding every message to a remote nats-mcp gRPC server (mutual TLS)."""
    from nats_mcp.transports.grpc.client import GrpcTarget

    if (cert is None) != (key is None):
        fail("--cert and --key go together", code=2)
    for name, path in (("--ca", ca), ("--cert", cert), ("--key", key), ("--token-file", token_file)):
        if path is not None and not path.is_file():
            fail(f"{name}: {path} is not a readable file", code=2)
    token = None
    if token_file is not None:
        token = token_file.read_text(encoding="utf-8").strip() or None
        if token is None:
            fail(f"--token-file: {token_file} is empty", code=2)
    if insecure_dev and (cert or token or pin):
        fail("--insecure-dev sends plaintext: it does not go with --cert, --token-file or --pin", code=2)
    try:
        pins = tuple(parse_pins(pin or (), "--pin"))
    except ValueError as exc:
        fail(str(exc), code=2)
    host = grpc_address.rsplit(":", 1)[0].strip("[]")
    if insecure_dev and not loopback_host(host):
        fail("--insecure-dev is for a loopback server only", code=2)
    target = GrpcTarget(
        grpc_address,
        ca_file=ca,
        cert_file=cert,
        key_file=key,
        token=token,
        agent=agent,
        server_name=server_name,
        plaintext=insecure_dev,
        pins=pins,
    )
    ended = None
    with contextlib.suppress(KeyboardInterrupt):
        ended = asyncio.run(_run(target))
    if ended is not None:
        err.print(f"nats-mcp bridge: the gRPC session ended: {ended}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


async def _run(target: GrpcTarget) -> str | None:
    from nats_mcp.transports.grpc.client import bridge as forward

    async with _stdio() as (read_line, write):
        return await forward(target, read_line, write)


def _pipes_usable() -> bool:
    try:
        modes = [os.fstat(fd).st_mode for fd in (0, 1)]
    except OSError:
        return False
    return all(stat.S_ISFIFO(m) or stat.S_ISSOCK(m) for m in modes)


@contextlib.asynccontextmanager
async def _stdio() -> AsyncIterator[tuple[Callable[[], Awaitable[bytes]], Callable[[bytes], Awaitable[None]]]]:
    """Line reader on stdin and writer on stdout: event-loop pipes where possible, else worker threads."""
    loop = asyncio.get_running_loop()
    if not _pipes_usable():

        async def read_thread() -> bytes:
            return await asyncio.to_thread(sys.stdin.buffer.readline, MAX_LINE_BYTES)

        async def write_thread(data: bytes) -> None:
            def put() -> None:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()

            await asyncio.to_thread(put)

        yield read_thread, write_thread
        return
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    stdin = os.fdopen(os.dup(0), "rb", buffering=0)
    stdout = os.fdopen(os.dup(1), "wb", buffering=0)
    read_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    write_transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stdout)
    writer = asyncio.StreamWriter(write_transport, protocol, None, loop)

    async def read_line() -> bytes:
        try:
            return await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError:
            raise ValueError(f"an input line is longer than {MAX_LINE_BYTES} bytes") from None

    async def write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    try:
        yield read_line, write
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.drain(), 5)
        write_transport.close()
        read_transport.close()
