"""Boundary of the stdio transport's pipe streams (in process, over os.pipe): lines in, messages out, and the ends."""

from __future__ import annotations

import asyncio
import json
import os

import anyio
import mcp_types as types
import pytest
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from nats_mcp.transports.stdio import PipeLines, PipeReadStream, PipeWriteStream


async def reader_of(data: bytes, *, limit: int = 1024) -> PipeReadStream:
    """A read stream over a pipe that holds ``data`` and is then closed by the writer."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    reader = asyncio.StreamReader(limit=limit)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0))
    return PipeReadStream(PipeLines(reader))


async def test_lines_become_messages_and_garbage_is_reported_in_band_until_eof() -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    stream = await reader_of(json.dumps(ping).encode() + b"\nnot json\n" + b'{"jsonrpc": "2.0", "method": "x"}')
    got = [item async for item in stream]
    assert isinstance(got[0], SessionMessage) and isinstance(got[0].message, types.JSONRPCRequest)
    assert got[0].message.id == 1 and got[0].message.method == "ping"
    assert isinstance(got[1], ValidationError)  # the dispatcher logs it; the session goes on
    # The last line has no newline: still a message (the client closed after it).
    assert isinstance(got[2], SessionMessage) and isinstance(got[2].message, types.JSONRPCNotification)
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()


async def test_an_over_long_line_is_skipped_and_what_follows_it_is_read() -> None:
    stream = await reader_of(b'{"x": "' + b"y" * 5000 + b'"}\n{"jsonrpc": "2.0", "id": 2, "method": "ping"}\n')
    first, second = [item async for item in stream]
    assert isinstance(first, ValidationError)  # answered as an invalid message, not buffered without bound
    assert isinstance(second, SessionMessage) and isinstance(second.message, types.JSONRPCRequest)


async def test_a_closed_read_stream_refuses_to_read() -> None:
    stream = await reader_of(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n')
    async with stream:
        pass
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()


async def writer() -> tuple[PipeWriteStream, int]:
    """A write stream into a pipe, and the pipe's read end."""
    read_fd, write_fd = os.pipe()
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(write_fd, "wb", buffering=0)
    )
    return PipeWriteStream(asyncio.StreamWriter(transport, protocol, None, loop)), read_fd


RESPONSE = SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=7, result={"a": "b\nc"}))


async def test_each_send_is_one_line_of_json_and_a_gone_reader_is_a_broken_stream() -> None:
    stream, read_fd = await writer()
    await asyncio.gather(*(stream.send(RESPONSE) for _ in range(3)))
    lines = os.read(read_fd, 65536).decode().splitlines()
    assert [json.loads(line) for line in lines] == [{"jsonrpc": "2.0", "id": 7, "result": {"a": "b\nc"}}] * 3
    os.close(read_fd)  # the client went away: sends fail the way the dispatcher expects, not with OSError
    with pytest.raises(anyio.BrokenResourceError):
        await stream.send(RESPONSE)


async def test_a_closed_write_stream_refuses_to_write() -> None:
    stream, read_fd = await writer()
    async with stream:
        await stream.send(RESPONSE)
    with pytest.raises(anyio.ClosedResourceError):
        await stream.send(RESPONSE)
    os.close(read_fd)


async def test_the_opening_request_is_read_ahead_and_received_again_after_what_came_before_it() -> None:
    note = b'{"jsonrpc": "2.0", "method": "notifications/x"}\n'
    ping = b'{"jsonrpc": "2.0", "id": 3, "method": "ping"}\n'
    stream = await reader_of(note * 10 + ping + b'{"jsonrpc": "2.0", "id": 4, "method": "ping"}\n', limit=65536)
    opening = await stream.opening_request()
    assert opening is not None and opening.id == 3
    got = [item async for item in stream]
    # The SDK's limit of frames kept ahead of the first request (8), then the request, then the rest, once each.
    assert [getattr(item.message, "id", None) for item in got if isinstance(item, SessionMessage)] == [None] * 8 + [
        3,
        4,
    ]
    closed = await reader_of(note)
    assert await closed.opening_request() is None  # the client left before any request
    assert [type(item.message) for item in [x async for x in closed] if isinstance(item, SessionMessage)] == [
        types.JSONRPCNotification
    ]
