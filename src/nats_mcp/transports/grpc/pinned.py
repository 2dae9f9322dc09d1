"""The pinned gRPC link boundary: a gRPC channel whose every connection is a TLS connection with checked pins.

gRPC's C core does the TLS of a channel and offers Python no hook into its handshake, so a channel with pins does
not do TLS itself: it talks HTTP/2 to a private Unix socket of this process (in a fresh mode-0700 directory), and
each connection it opens there is carried over a new TLS connection that Python makes to the server, with the
target's CA, client certificate, server name and ALPN ``h2``, and with the pins checked right after the handshake
(:mod:`nats_mcp.core.pins`). Nothing gRPC writes (metadata with the bearer token included) is forwarded before that
check passed; a refused handshake closes gRPC's side, so its call fails, and :attr:`PinnedLink.refusal` says why.
gRPC's own reconnects open new connections to the socket, so every reconnect is checked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import grpc

from nats_mcp.core.pins import PinMismatchError, pin_context, pin_error


class PinnedTarget(Protocol):
    """What the forwarder reads of a target (client.py's ``GrpcTarget``): named here so this module, which client.py
    imports, imports nothing back."""

    @property
    def address(self) -> str: ...
    @property
    def ca_file(self) -> Path | None: ...
    @property
    def cert_file(self) -> Path | None: ...
    @property
    def key_file(self) -> Path | None: ...
    @property
    def server_name(self) -> str | None: ...
    @property
    def pins(self) -> tuple[str, ...]: ...


log = logging.getLogger("nats_mcp.grpc.client")

SETTING = "--pin"
CONNECT_TIMEOUT_S = 10.0
_CHUNK = 64 * 1024


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a pair; ValueError otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def tls_context(target: PinnedTarget) -> ssl.SSLContext:
    """The client TLS context of a pinned target: its CA (else the system store), client certificate, h2, pins."""
    ctx = ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)
    if target.cert_file is not None and target.key_file is not None:
        ctx.load_cert_chain(str(target.cert_file), str(target.key_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    return pin_context(ctx, target.pins, SETTING)


class PinnedLink:
    """``async with PinnedLink(target) as link``: ``link.channel`` reaches the target over pinned TLS only."""

    def __init__(self, target: PinnedTarget, options: list[tuple[str, Any]]) -> None:
        if not target.pins:
            raise ValueError("a pinned link needs pins")
        self.target = target
        self.host, self.port = split_address(target.address)
        self.server_hostname = target.server_name or self.host
        self.context = tls_context(target)
        self.options = [*options, ("grpc.default_authority", target.address)]
        self.refusal: PinMismatchError | None = None
        """The last pin refusal (None while every handshake matched)."""
        self.handshakes = 0
        """Pinned handshakes that succeeded (one per connection gRPC opened)."""
        self._dir: str | None = None
        self._server: asyncio.Server | None = None
        self._carriers: set[asyncio.Task[None]] = set()
        self._open: set[tuple[asyncio.StreamWriter, ...]] = set()
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> PinnedLink:
        self._dir = tempfile.mkdtemp(prefix="nats-mcp-grpc-")  # 0700: no other local user reaches the socket
        path = str(Path(self._dir) / "link.sock")
        self._server = await asyncio.start_unix_server(self._carry, path)
        self.channel = grpc.aio.insecure_channel(f"unix:{path}", options=self.options)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self._server is not None:
            self._server.close()
        # Closing both ends lets each carrier finish by itself (asyncio's stream server mishandles a cancelled one).
        for writers in list(self._open):
            for writer in writers:
                writer.close()
        if self._carriers:
            await asyncio.wait(list(self._carriers), timeout=CONNECT_TIMEOUT_S)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _carry(self, local_reader: asyncio.StreamReader, local_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._carriers.add(task)
        try:
            try:
                remote_reader, remote_writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self.host, self.port, ssl=self.context, server_hostname=self.server_hostname
                    ),
                    CONNECT_TIMEOUT_S,
                )
            except Exception as exc:  # nothing of gRPC's was forwarded: close its side, say why
                refusal = pin_error(exc)
                if refusal is not None:
                    self.refusal = refusal
                    log.warning("%s", refusal)
                else:
                    log.warning("cannot reach %s over TLS: %s", self.target.address, exc)
                return
            self.handshakes += 1
            both = (local_writer, remote_writer)
            self._open.add(both)
            # HTTP/2 never half-closes: when either side ends, the connection ends.
            pumps = [
                asyncio.ensure_future(_pump(local_reader, remote_writer)),
                asyncio.ensure_future(_pump(remote_reader, local_writer)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                remote_writer.close()
                self._open.discard(both)
        finally:
            local_writer.close()
            if task is not None:
                self._carriers.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
