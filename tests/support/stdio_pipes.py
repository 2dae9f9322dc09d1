"""In-process stdio: a built server served by transports/stdio.py over os pipes, driven by raw JSON-RPC lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.lowlevel import Server

from nats_mcp.transports.stdio import MAX_LINE_BYTES, PipeLines, PipeReadStream, PipeWriteStream, _serve_pipes

ANSWER_TIMEOUT_S = 20.0


class LineClient:
    """Writes lines to the server's stdin and keeps every line it writes to its stdout, in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: PipeReadStream) -> None:
        self._writer = writer
        self.stream = stream
        self.lines: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        """Every line as written, bytes and all (``lines`` has them parsed)."""
        self._seen = asyncio.Condition()
        self.eof = False
        self._pump = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            async with self._seen:
                self.raw.append(line)
                self.lines.append(json.loads(line))
                self._seen.notify_all()
        async with self._seen:
            self.eof = True
            self._seen.notify_all()

    async def send(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        self._writer.write(text.encode() + b"\n")
        await self._writer.drain()

    def answer_of(self, request_id: Any) -> dict[str, Any] | None:
        """The answer (result or error) to ``request_id`` written so far (ids compared with their JSON type)."""
        for line in self.lines:
            if "method" not in line and "id" in line and json.dumps(line["id"]) == json.dumps(request_id):
                return line
        return None

    async def answer(self, request_id: Any) -> dict[str, Any]:
        async with self._seen:
            await asyncio.wait_for(
                self._seen.wait_for(lambda: self.answer_of(request_id) is not None or self.eof), ANSWER_TIMEOUT_S
            )
        found = self.answer_of(request_id)
        assert found is not None, f"no answer to {request_id!r} before the server closed"
        return found

    async def wait_for(self, predicate: Any) -> None:
        """Until ``predicate(lines)`` holds (a notification arrived, say)."""
        async with self._seen:
            await asyncio.wait_for(self._seen.wait_for(lambda: predicate(self.lines) or self.eof), ANSWER_TIMEOUT_S)

    async def close_input(self) -> None:
        """End the server's input (the client closed stdin) and wait for its output to end."""
        self._writer.close()
        async with self._seen:
            await asyncio.wait_for(self._seen.wait_for(lambda: self.eof), ANSWER_TIMEOUT_S)


@contextlib.asynccontextmanager
async def piped(server: Server[Any], *, own_dispatch: bool) -> AsyncIterator[LineClient]:
    """``server`` served as ``nats-mcp serve`` serves it on stdio, with its stdin and stdout pipes held by the test."""
    loop = asyncio.get_running_loop()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    server_in = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    in_read, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(server_in), os.fdopen(in_r, "rb", buffering=0)
    )
    out_transport, out_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(out_w, "wb", buffering=0)
    )
    read_stream = PipeReadStream(PipeLines(server_in))
    write_stream = PipeWriteStream(asyncio.StreamWriter(out_transport, out_protocol, None, loop))
    client_in = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    out_read, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(client_in), os.fdopen(out_r, "rb", buffering=0)
    )
    in_transport, in_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(in_w, "wb", buffering=0)
    )
    client = LineClient(client_in, asyncio.StreamWriter(in_transport, in_protocol, None, loop), read_stream)

    async def serve() -> None:
        try:
            await _serve_pipes(server, read_stream, write_stream, own_dispatch=own_dispatch)
        finally:
            out_transport.close()  # the client's read of stdout ends, as when the process exits

    task = loop.create_task(serve())
    try:
        yield client
        await client.close_input()
        await asyncio.wait_for(task, ANSWER_TIMEOUT_S)
    finally:
        in_transport.close()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client._pump
        in_read.close()
        out_read.close()
