"""The stdio transport: MCP over stdin/stdout for one local agent (stdout carries only protocol).

The SDK's ``stdio_server`` reads and writes through anyio worker threads, and between those and the
server it puts a reader task and a writer task joined to it by memory streams: per call three thread
hand-offs (read a line, write, flush) and two task hand-offs, which profiling showed as the largest
share of a tool call's time. Here stdin and stdout are asyncio pipes on the event loop itself, and the
server's read and write streams are those pipes directly: ``receive`` reads and parses a line (one
``mcp_types`` validation of the envelope, as the SDK's reader does), ``send`` serialises and writes
(as its writer does), so no task sits between the wire and the SDK's dispatcher. Like the SDK, the
real descriptors are claimed: fd 0 is pointed at /dev/null and fd 1 at stderr while serving, so a stray
print or a child process can never corrupt the protocol stream. Where stdin/stdout are not pipes or
sockets (a regular file, a terminal that epoll refuses), the SDK's threaded transport is used unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any

import anyio
import mcp.server.runner as sdk_runner
import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.lowlevel import Server
from mcp.server.runner import ServerRunner, aclose_shielded
from mcp.server.stdio import stdio_server
from mcp.shared.dispatcher import DispatchContext
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import SessionMessage
from mcp.shared.transport_context import TransportContext

from nats_mcp.api.direct import DirectCalls
from nats_mcp.transports.stdio_front import Opening
from nats_mcp.transports.stdio_handover import DropFirstReply

log = logging.getLogger("nats_mcp.transports.stdio")

OWN_DISPATCH_ENV = "NATS_MCP_STDIO_OWN_DISPATCH"
"""``0``: every request goes through the SDK's dispatcher (api/direct.py off; the differential test's other side)."""

MAX_LINE_BYTES = 64 * 1024 * 1024
"""One JSON-RPC message per line; a longer line is refused (and skipped), not buffered without bound."""


class PipeLines:
    """Async iterator of text lines from a pipe, read on the event loop (no worker thread)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> PipeLines:
        return self

    async def __anext__(self) -> str:
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    return exc.partial.decode("utf-8", "replace")
                raise StopAsyncIteration from None
            except asyncio.LimitOverrunError:
                await self._skip_line()
                log.warning("skipped an input line longer than %d bytes", MAX_LINE_BYTES)
                return "{}"  # answered by the SDK as an invalid message, and the session goes on
            return line.decode("utf-8", "replace")

    async def _skip_line(self) -> None:
        """Drop the rest of an over-long line, keeping whatever follows its newline."""
        while True:
            try:
                await self._reader.readuntil(b"\n")  # fits now that the head of the line is gone
                return
            except asyncio.LimitOverrunError as exc:
                await self._reader.readexactly(exc.consumed)
            except asyncio.IncompleteReadError:
                return


class PipeReadStream:
    """The server's read stream: each ``receive`` parses the next stdin line into a message, on the caller's task.

    A line that is not a JSON-RPC message is handed on as its validation error, as the SDK's reader does (the
    dispatcher logs it and the session goes on).
    """

    def __init__(self, lines: PipeLines) -> None:
        self._lines = lines
        self._closed = False
        self._lead: deque[SessionMessage | Exception] = deque()
        self.direct: DirectCalls | None = None
        """Offered each message first: what it takes (the hot requests) the SDK's dispatcher never sees."""

    async def opening_request(self) -> types.JSONRPCRequest | None:
        """Read ahead to the client's first request (None: it closed first), which decides the protocol era.

        It and the frames before it (at most the SDK's limit of them) are received again, first: what the SDK's
        ``serve_dual_era_loop`` does by relaying the whole stream through another task, done here once.
        """
        while True:
            try:
                item = await self._parse_next()
            except anyio.EndOfStream:
                return None
            if isinstance(item, SessionMessage) and isinstance(item.message, types.JSONRPCRequest):
                self._lead.append(item)
                return item.message
            if len(self._lead) < sdk_runner._PRE_REQUEST_REPLAY_LIMIT:
                self._lead.append(item)

    async def receive(self) -> SessionMessage | Exception:
        if self._closed:
            raise anyio.ClosedResourceError
        while True:
            if self._lead:
                item = self._lead.popleft()
            else:
                try:
                    item = await self._parse_next()
                except anyio.EndOfStream:
                    if self.direct is not None:  # its calls still running answer before the dispatcher closes
                        await self.direct.close()
                    raise
            if self.direct is None or not self.direct.offer(item):
                return item

    async def _parse_next(self) -> SessionMessage | Exception:
        try:
            line = await self._lines.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None
        try:
            return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
        except Exception as exc:  # any parse failure is reported in-band, never ends the session
            return exc

    def __aiter__(self) -> PipeReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> PipeReadStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class PipeWriteStream:
    """The server's write stream: each ``send`` writes one line to stdout, on the caller's task.

    ``transport.write`` takes a whole line at once, so concurrent senders never interleave; ``drain`` waits only
    while the client is not reading (the pipe's buffer is over its high-water mark).
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._closed = False

    async def send(self, item: SessionMessage, /) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._writer.transport.is_closing():
            raise anyio.BrokenResourceError
        await self.send_json(item.message.model_dump_json(by_alias=True, exclude_unset=True).encode("utf-8"))

    async def send_json(self, data: bytes, /) -> None:
        """Write one message already serialised as the SDK's writer does (compact JSON, UTF-8): api/direct.py's
        answers, made without building the envelope's model."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._writer.transport.is_closing():
            raise anyio.BrokenResourceError
        try:
            self._writer.write(data + b"\n")
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:  # the client closed stdout's far end
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> PipeWriteStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


@contextlib.contextmanager
def _claimed(fd: int, flags: int, diversion: str | int) -> Iterator[int]:
    """A private duplicate of ``fd`` for the wire, with ``fd`` itself pointed elsewhere until exit."""
    private = os.dup(fd)
    target = os.open(diversion, flags) if isinstance(diversion, str) else os.dup(diversion)
    os.dup2(target, fd)
    os.close(target)
    try:
        yield private
    finally:
        with contextlib.suppress(OSError):
            os.dup2(private, fd)


@contextlib.asynccontextmanager
async def _pipe_streams(lead: bytes = b"") -> AsyncIterator[tuple[PipeReadStream, PipeWriteStream]]:
    loop = asyncio.get_running_loop()
    with _claimed(0, os.O_RDONLY, os.devnull) as in_fd, _claimed(1, os.O_WRONLY, 2) as out_fd:
        stdin = os.fdopen(in_fd, "rb", buffering=0)
        stdout = os.fdopen(out_fd, "wb", buffering=0)
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        if lead:  # what the stdio front read and left to the SDK comes before the rest of the pipe
            reader.feed_data(lead)
        read_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
        try:
            write_transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stdout)
        except BaseException:
            read_transport.close()
            raise
        writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
        try:
            yield PipeReadStream(PipeLines(reader)), PipeWriteStream(writer)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), 5)
            write_transport.close()
            read_transport.close()


def _pipes_usable() -> bool:
    """connect_read_pipe/connect_write_pipe work for pipes, FIFOs and sockets only."""
    import stat

    try:
        modes = [os.fstat(fd).st_mode for fd in (0, 1)]
    except OSError:
        return False
    return all(stat.S_ISFIFO(m) or stat.S_ISSOCK(m) for m in modes) and sys.platform != "win32"


async def _serve_pipes(
    server: Server[Any],
    read_stream: PipeReadStream,
    write_stream: PipeWriteStream | DropFirstReply,
    *,
    own_dispatch: bool = True,
    modern: bool = False,
) -> None:
    """``Server.run`` (the lifespan, then ``serve_dual_era_loop``) without the loop's relay task.

    The SDK decides the era by the first request and then relays every later message through a second memory
    stream and task (one more hand-off per message for the whole session). Our read stream can hand the first
    request back itself, so the era's serving loop reads the pipe directly. With ``own_dispatch`` the hot requests
    (``tools/call``, ``ping``) are taken off the stream by api/direct.py before the SDK's dispatcher sees them. The
    SDK's era loops are private functions: the SDK is pinned (uv.lock), and tests/e2e/test_protocol_revisions.py
    runs both eras over stdio. ``modern``: the stdio front already answered 2026-07-28 requests on this session
    (stdio_front.py), so that era.
    """
    async with server.lifespan(server) as lifespan_state:
        try:
            opening = await read_stream.opening_request()
            modern = modern or (
                opening is not None
                and opening.method != "initialize"
                and sdk_runner._has_modern_envelope(opening.params)
            )
            if modern:
                if own_dispatch:
                    read_stream.direct = DirectCalls(server, lifespan_state, write_stream, None)
                await sdk_runner._serve_modern_stream(
                    server, read_stream, write_stream, lifespan_state=lifespan_state, raise_exceptions=False
                )
            elif own_dispatch:
                await _serve_handshake(server, read_stream, write_stream, lifespan_state)
            else:
                await sdk_runner._serve_legacy_stream(
                    server,
                    read_stream,
                    write_stream,
                    lifespan_state=lifespan_state,
                    session_id=None,
                    init_options=server.create_initialization_options(),
                    raise_exceptions=False,
                )
        finally:
            if read_stream.direct is not None:
                await read_stream.direct.close()
            await read_stream.aclose()
            await write_stream.aclose()


async def _serve_handshake(
    server: Server[Any],
    read_stream: PipeReadStream,
    write_stream: PipeWriteStream | DropFirstReply,
    lifespan_state: Any,
) -> None:
    """The SDK's handshake-era loop (``_serve_legacy_stream``), built here so api/direct.py reads its connection.

    The guard's and the log's per-session state (client info, the negotiated revision, the log level) stays the
    SDK's: ``initialize`` and ``notifications/initialized`` still go to its kernel, which writes them there.
    """
    dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
        read_stream, write_stream, raise_handler_exceptions=False, inline_methods=frozenset({"initialize"})
    )
    connection = Connection.for_loop(dispatcher)
    runner = ServerRunner(server, connection, lifespan_state, init_options=server.create_initialization_options())
    read_stream.direct = DirectCalls(server, lifespan_state, write_stream, connection)

    async def on_request(
        dctx: DispatchContext[TransportContext], method: str, params: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        if method != "initialize" and sdk_runner._has_modern_envelope(params):
            raise MCPError(
                code=types.INVALID_REQUEST,
                message="this connection serves the handshake protocol era; "
                "requests carrying the 2026-07-28 envelope are not accepted on it",
            )
        return await runner.on_request(dctx, method, params)

    try:
        await dispatcher.run(on_request, runner.on_notify)
    finally:
        await aclose_shielded(connection)


def own_dispatch_default() -> bool:
    """Whether api/direct.py answers the hot requests (``NATS_MCP_STDIO_OWN_DISPATCH=0``: the SDK answers all)."""
    return os.environ.get(OWN_DISPATCH_ENV, "1").strip() != "0"


async def serve_stdio(server: Server[Any], opening: Opening | None = None, *, own_dispatch: bool | None = None) -> None:
    """Serve until the client closes stdin; ``opening``: where the stdio front (stdio_front.py) left the session;
    ``own_dispatch`` None: as ``NATS_MCP_STDIO_OWN_DISPATCH`` says (on)."""
    if _pipes_usable():
        own = own_dispatch_default() if own_dispatch is None else own_dispatch
        async with _pipe_streams(opening.lead if opening else b"") as (read_stream, write_stream):
            log.info("serving MCP over stdio (event-loop pipes%s)", "" if own else ", the SDK's dispatch only")
            drop = opening.drop_reply_to if opening else None
            await _serve_pipes(
                server,
                read_stream,
                write_stream if drop is None else DropFirstReply(write_stream, drop),
                own_dispatch=own,
                modern=opening is not None and opening.modern,
            )
    else:  # the front runs only on pipes (stdio_front.pipes_usable), so there is no opening here
        async with stdio_server() as (read_stream, write_stream):
            log.info("serving MCP over stdio (threaded: stdin/stdout are not pipes)")
            await server.run(read_stream, write_stream, server.create_initialization_options())
    log.info("stdio client closed the session")
