"""The gRPC transport boundary (client side): a ``Session`` stream to a nats-mcp gRPC server, with mTLS and a bearer.

:func:`grpc_transport` is a transport for the SDK's ``Client``/``ClientSession`` (a read/write pair of
``SessionMessage`` streams); :func:`bridge` forwards newline-delimited JSON-RPC between a local stdio client and
the remote server unchanged (``nats-mcp bridge``). Every frame is one complete JSON-RPC message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import grpc
import mcp_types as types
from mcp.shared._context_streams import ContextReceiveStream, ContextSendStream, create_context_streams
from mcp.shared.message import SessionMessage

from nats_mcp.core.pins import parse_pins
from nats_mcp.transports.grpc.gen.transport_pb2 import Frame
from nats_mcp.transports.grpc.pinned import PinnedLink

log = logging.getLogger("nats_mcp.grpc.client")

SESSION_METHOD = "/nats_mcp.v1.McpTransport/Session"
CALL_METHOD = "/nats_mcp.v1.McpTransport/Call"
LISTEN_METHOD = "/nats_mcp.v1.McpTransport/Listen"
MAX_RECEIVE_BYTES = 64 * 1024 * 1024

Streams = tuple[ContextReceiveStream[SessionMessage | Exception], ContextSendStream[SessionMessage]]


@dataclass(frozen=True)
class GrpcTarget:
    """Where the server is and how to prove who we are."""

    address: str
    """``host:port``; the host must match the server certificate (or ``server_name``)."""
    ca_file: Path | None = None
    """CA that issued the server certificate (None: the system roots)."""
    cert_file: Path | None = None
    """Client certificate chain (PEM), for mutual TLS."""
    key_file: Path | None = None
    token: str | None = field(default=None, repr=False)
    """Bearer JWT or API key, sent as ``authorization: Bearer …`` metadata."""
    agent: str | None = None
    """The agent name to act as (``x-nats-mcp-agent``; the policy decides if the principal may)."""
    server_name: str | None = None
    """TLS name to verify instead of the address's host."""
    plaintext: bool = False
    """No TLS (only for a server started with ``--insecure-dev``)."""
    pins: tuple[str, ...] = ()
    """SPKI pins (``sha256/<base64>``, :mod:`nats_mcp.core.pins`): the server's verified chain must hold one of
    these keys on every connection, or nothing is sent (transports/grpc/pinned.py)."""

    def __post_init__(self) -> None:
        if self.pins:
            parse_pins(self.pins, "--pin")
            if self.plaintext:
                raise ValueError("pins need TLS: they do not go with a plaintext target")

    def metadata(self) -> tuple[tuple[str, str], ...]:
        found: list[tuple[str, str]] = []
        if self.token:
            found.append(("authorization", f"Bearer {self.token}"))
        if self.agent:
            found.append(("x-nats-mcp-agent", self.agent))
        return tuple(found)


def open_channel(target: GrpcTarget) -> grpc.aio.Channel:
    """A channel to ``target`` (TLS with the client certificate if given; plaintext only if asked)."""
    if target.pins:  # gRPC's own TLS cannot check them: only connect() reaches a pinned target
        raise ValueError("a pinned target's channel comes from connect(), which checks the pins on every connection")
    options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
    if target.plaintext:
        return grpc.aio.insecure_channel(target.address, options=options)
    if target.server_name:
        options.append(("grpc.ssl_target_name_override", target.server_name))
    if (target.cert_file is None) != (target.key_file is None):
        raise ValueError("a client certificate needs both its chain (--cert) and its key (--key)")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=target.ca_file.read_bytes() if target.ca_file else None,
        private_key=target.key_file.read_bytes() if target.key_file else None,
        certificate_chain=target.cert_file.read_bytes() if target.cert_file else None,
    )
    return grpc.aio.secure_channel(target.address, credentials, options=options)


@contextlib.asynccontextmanager
async def connect(target: GrpcTarget) -> AsyncIterator[tuple[grpc.aio.Channel, PinnedLink | None]]:
    """A channel to ``target``, closed on exit; with pins, over a :class:`PinnedLink` (also yielded: its
    ``refusal`` says why a call failed when a handshake's pins did not match)."""
    if not target.pins:
        channel = open_channel(target)
        try:
            yield channel, None
        finally:
            await channel.close()
        return
    async with PinnedLink(target, [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]) as link:
        assert link.channel is not None
        yield link.channel, link


async def open_session(channel: grpc.aio.Channel, target: GrpcTarget) -> grpc.aio.StreamStreamCall[Frame, Frame]:
    """A ``Session`` call on ``channel`` with the target's metadata, once the server admitted it.

    The server sends its initial metadata when it admits the stream; writing before that could race a refusal,
    and grpc's Python client then reports INTERNAL instead of the refusal's status. A refused call is returned
    done (its status tells why).
    """
    method: grpc.aio.StreamStreamMultiCallable[Frame, Frame] = channel.stream_stream(
        SESSION_METHOD, request_serializer=Frame.SerializeToString, response_deserializer=Frame.FromString
    )
    call = method(metadata=target.metadata())
    with contextlib.suppress(grpc.aio.AioRpcError):
        await call.initial_metadata()
    return call


def describe(error: grpc.aio.AioRpcError) -> str:
    """``CODE: details`` (and the www-authenticate challenge when there is one)."""
    text = f"{error.code().name}: {error.details()}"
    for key, value in error.trailing_metadata() or ():
        if key == "www-authenticate":
            text += f" ({key}: {value!s})"
    return text


@dataclass
class GrpcTransport:
    """The SDK client transport over one ``Session`` stream: ``async with GrpcTransport(target) as (read, write)``.

    When the server ends the stream with an error status, ``error`` holds it (and the read stream ends).
    """

    target: GrpcTarget
    error: grpc.aio.AioRpcError | None = None
    _stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Streams:
        stack = contextlib.AsyncExitStack()
        try:
            streams = await stack.enter_async_context(self._streams())
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return streams

    async def __aexit__(self, *exc: object) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    @contextlib.asynccontextmanager
    async def _streams(self) -> AsyncIterator[Streams]:
        async with connect(self.target) as (channel, link):
            call = await open_session(channel, self.target)
            if link is not None and link.refusal is not None and call.done():
                raise link.refusal  # the server's key is not pinned: nothing was sent
            async with self._relay(call) as streams:
                yield streams

    @contextlib.asynccontextmanager
    async def _relay(self, call: grpc.aio.StreamStreamCall[Frame, Frame]) -> AsyncIterator[Streams]:
        to_client, read_stream = create_context_streams[SessionMessage | Exception](0)
        write_stream, from_client = create_context_streams[SessionMessage](0)

        async def upstream() -> None:
            # A call the server ended refuses writes; its status reaches the client through downstream().
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                async with from_client:
                    async for message in from_client:
                        json = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                        await call.write(Frame(json=json.encode()))
                await call.done_writing()

        async def downstream() -> None:
            async with to_client:
                try:
                    async for frame in call:
                        try:
                            message = types.jsonrpc_message_adapter.validate_json(frame.json, by_name=False)
                        except ValueError as exc:
                            await to_client.send(exc)
                            continue
                        await to_client.send(SessionMessage(message))
                except grpc.aio.AioRpcError as error:
                    self.error = error
                    log.warning("gRPC session ended: %s", describe(error))
                except anyio.BrokenResourceError:
                    pass

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(upstream)
                tg.start_soon(downstream)
                try:
                    yield read_stream, write_stream
                finally:
                    tg.cancel_scope.cancel()
        finally:
            call.cancel()
            for stream in (read_stream, write_stream):
                stream.close()


def grpc_transport(target: GrpcTarget) -> GrpcTransport:
    """A transport for ``mcp.Client(grpc_transport(target))``."""
    return GrpcTransport(target)


# ---- the stdio bridge ------------------------------------------------------------------------------------------


async def bridge(
    target: GrpcTarget,
    read_line: Callable[[], Awaitable[bytes]],
    write: Callable[[bytes], Awaitable[None]],
) -> str | None:
    """Forward JSON-RPC lines from ``read_line`` (b"" at end of input) to the server, its frames to ``write``.

    Returns None when the session ended cleanly (the client closed its input), else the gRPC status that ended it
    (or the pin refusal, when the server's key is not pinned).
    """
    async with connect(target) as (channel, link):
        call = await open_session(channel, target)
        ended = await _forward(call, read_line, write)
        if ended is not None and link is not None and link.refusal is not None:
            return str(link.refusal)
        return ended


async def _forward(
    call: grpc.aio.StreamStreamCall[Frame, Frame],
    read_line: Callable[[], Awaitable[bytes]],
    write: Callable[[bytes], Awaitable[None]],
) -> str | None:
    ended: str | None = None

    async def upstream() -> None:
        while True:
            line = await read_line()
            if not line:
                break
            line = line.strip()
            if line:
                await call.write(Frame(json=line))
        await call.done_writing()

    async def downstream() -> None:
        async for frame in call:
            await write(frame.json + b"\n")

    try:
        async with anyio.create_task_group() as tg:

            async def up() -> None:
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    await upstream()

            tg.start_soon(up)
            try:
                await downstream()
            finally:
                tg.cancel_scope.cancel()
    except* grpc.aio.AioRpcError as group:
        error = group.exceptions[0]
        ended = describe(error) if isinstance(error, grpc.aio.AioRpcError) else str(error)
    finally:
        call.cancel()
    return ended
