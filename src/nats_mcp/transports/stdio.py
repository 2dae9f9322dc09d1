"""The stdio transport: MCP over stdin/stdout for one local agent (stdout carries only protocol).

The SDK's ``stdio_server`` reads and writes through anyio worker threads: three thread hand-offs per
call (read a line, write, flush), which profiling showed as the largest share of a tool call's time.
Here stdin and stdout are asyncio pipes read and written on the event loop itself; the SDK's
transport is still used, with these streams plugged in. Like the SDK, the real descriptors are
claimed: fd 0 is pointed at /dev/null and fd 1 at stderr while serving, so a stray print or a child
process can never corrupt the protocol stream. Where stdin/stdout are not pipes or sockets (a regular
file, a terminal that epoll refuses), the SDK's threaded transport is used unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

log = logging.getLogger("nats_mcp.transports.stdio")

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


class PipeWriter:
    """``write``/``flush`` on a pipe through an asyncio transport (no worker thread)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()


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
async def _pipe_streams() -> AsyncIterator[tuple[PipeLines, PipeWriter]]:
    loop = asyncio.get_running_loop()
    with _claimed(0, os.O_RDONLY, os.devnull) as in_fd, _claimed(1, os.O_WRONLY, 2) as out_fd:
        stdin = os.fdopen(in_fd, "rb", buffering=0)
        stdout = os.fdopen(out_fd, "wb", buffering=0)
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        read_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
        try:
            write_transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stdout)
        except BaseException:
            read_transport.close()
            raise
        writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
        try:
            yield PipeLines(reader), PipeWriter(writer)
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


async def serve_stdio(server: Server[Any]) -> None:
    """Serve until the client closes stdin."""
    if _pipes_usable():
        # The SDK's transport with our streams: it types them as anyio files, which they imitate.
        async with (
            _pipe_streams() as (lines, out),
            stdio_server(stdin=lines, stdout=out) as (read_stream, write_stream),  # type: ignore[arg-type]
        ):
            log.info("serving MCP over stdio (event-loop pipes)")
            await server.run(read_stream, write_stream, server.create_initialization_options())
    else:
        async with stdio_server() as (read_stream, write_stream):
            log.info("serving MCP over stdio (threaded: stdin/stdout are not pipes)")
            await server.run(read_stream, write_stream, server.create_initialization_options())
    log.info("stdio client closed the session")
