"""The stdio front's boundary: which messages it answers from a cache entry, and where it leaves the session.

Driven over real pipes (the descriptors the front reads and writes), with an entry recorded from the SDK by
transports/stdio_handover.py's ``capture``; the subprocess differential with the SDK is
tests/e2e/test_stdio_front.py.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import anyio
import mcp_types
import pytest
from mcp.shared.message import SessionMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from nats_mcp.api.server import build_server
from nats_mcp.transports import stdio_front
from nats_mcp.transports.startup_cache import Entry
from nats_mcp.transports.stdio_front import Front, Opening
from nats_mcp.transports.stdio_handover import DropFirstReply, capture

MODERN = MODERN_PROTOCOL_VERSIONS[-1]


@pytest.fixture(scope="module")
def answers() -> dict[str, Any]:
    return anyio.run(capture, build_server())


@pytest.fixture
def entry(answers: dict[str, Any]) -> Entry:
    return Entry(
        tuple(answers["handshake_versions"]),
        answers["latest_handshake"],
        tuple(answers["modern_versions"]),
        answers["initialize"],
        answers["discover"],
        answers["tools_list"],
        answers["ping"],
    )


def init(version: str = "2025-11-25", rid: int | str = 1, **extra: Any) -> dict[str, Any]:
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}, **extra}
    return {"jsonrpc": "2.0", "id": rid, "method": "initialize", "params": params}


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def request(method: str, rid: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, **({"params": params} if params is not None else {})}


def modern(method: str, rid: int, capabilities: Any = None, version: str = MODERN) -> dict[str, Any]:
    meta = {
        stdio_front.PROTOCOL_VERSION_KEY: version,
        stdio_front.CLIENT_INFO_KEY: {"name": "t", "version": "1"},
        stdio_front.CLIENT_CAPABILITIES_KEY: {} if capabilities is None else capabilities,
    }
    return request(method, rid, {"_meta": meta})


def lines(*messages: dict[str, Any] | str) -> bytes:
    return b"".join((m if isinstance(m, str) else json.dumps(m)).encode() + b"\n" for m in messages)


@pytest.fixture
def pipes() -> Iterator[tuple[int, int, int, int]]:
    """(client writes, front reads, front writes, client reads)."""
    to_front_r, to_front_w = os.pipe()
    from_front_r, from_front_w = os.pipe()
    yield to_front_w, to_front_r, from_front_w, from_front_r
    for fd in (to_front_r, to_front_w, from_front_r, from_front_w):
        with contextlib.suppress(OSError):
            os.close(fd)


def run_front(entry: Entry, pipes: tuple[int, int, int, int], sent: bytes) -> tuple[list[str], Opening]:
    """The front on ``sent`` until it stops (it reads all the pipe holds before a hand-over): answers, opening."""
    client_w, front_r, front_w, client_r = pipes
    os.write(client_w, sent)
    front = Front(entry, front_r, front_w)
    front.start()
    opening = front.handover()
    os.close(front_w)
    out = b""
    while chunk := os.read(client_r, 1 << 20):
        out += chunk
    return out.decode().splitlines(), opening


def reply(rid: int | str, text: str) -> str:
    return '{"jsonrpc":"2.0","id":' + json.dumps(rid) + ',"result":' + text + "}"


def test_revisions_capabilities_and_envelope_are_the_sdks(answers: dict[str, Any]) -> None:
    """One place: the entry records what the SDK serves; the envelope keys the front reads are mcp_types'."""
    assert answers["handshake_versions"] == list(HANDSHAKE_PROTOCOL_VERSIONS)
    assert answers["latest_handshake"] == LATEST_HANDSHAKE_VERSION
    assert answers["modern_versions"] == list(MODERN_PROTOCOL_VERSIONS)
    server = build_server()
    capabilities = server.create_initialization_options().capabilities.model_dump(by_alias=True, exclude_none=True)
    for version in HANDSHAKE_PROTOCOL_VERSIONS:
        result = json.loads(answers["initialize"][version])
        assert result["protocolVersion"] == version
        # The SDK's per-revision sieve drops what the handshake revisions do not define (``extensions``).
        assert result["capabilities"] == {k: v for k, v in capabilities.items() if k != "extensions"}
        assert result["serverInfo"]["name"] == "nats-mcp" and result["instructions"]
    assert stdio_front.PROTOCOL_VERSION_KEY == mcp_types.PROTOCOL_VERSION_META_KEY
    assert stdio_front.CLIENT_INFO_KEY == mcp_types.CLIENT_INFO_META_KEY
    assert stdio_front.CLIENT_CAPABILITIES_KEY == mcp_types.CLIENT_CAPABILITIES_META_KEY


def test_handshake_era_answered_then_left_with_the_replay(entry: Entry, pipes: tuple[int, int, int, int]) -> None:
    call = request("tools/call", 4, {"name": "warp_handle_set", "arguments": {"handle": "a"}})
    sent = lines(init("2025-06-18"), INITIALIZED, request("tools/list", 2), request("ping", "p"), call)
    got, opening = run_front(entry, pipes, sent + b'{"jsonrpc":')
    assert got == [
        reply(1, entry.initialize["2025-06-18"]),
        reply(2, entry.tools_list["2025-06-18"]),
        reply("p", entry.ping["2025-06-18"]),
    ]
    # The SDK reads the initialize and initialized again (their answer dropped), then what the front left.
    assert opening.lead == lines(init("2025-06-18"), INITIALIZED, call) + b'{"jsonrpc":'
    assert (opening.drop_reply_to, opening.modern, opening.answered) == (1, False, 4)


def test_unknown_revision_negotiates_the_latest(entry: Entry, pipes: tuple[int, int, int, int]) -> None:
    got, opening = run_front(entry, pipes, lines(init("1999-01-01", rid="a")))
    assert got == [reply("a", entry.initialize[LATEST_HANDSHAKE_VERSION])]
    assert json.loads(entry.initialize[LATEST_HANDSHAKE_VERSION])["protocolVersion"] == LATEST_HANDSHAKE_VERSION
    assert opening.drop_reply_to == "a"


def test_modern_era_answered_and_left_with_its_era(entry: Entry, pipes: tuple[int, int, int, int]) -> None:
    rest = modern("resources/list", 3)
    sent = lines(modern("server/discover", 1), modern("tools/list", 2, {"roots": {"listChanged": True}}), rest)
    got, opening = run_front(entry, pipes, sent)
    assert got == [reply(1, entry.discover[MODERN]), reply(2, entry.tools_list[MODERN])]
    assert json.loads(entry.tools_list[MODERN])["resultType"] == "complete"
    assert opening == Opening(lines(rest), None, True, 2)


@pytest.mark.parametrize(
    "first",
    [
        "this is not JSON",
        json.dumps([init()]),  # a batch
        json.dumps(request("tools/list", 1)),  # before initialize
        json.dumps(request("resources/list", 1)),
        json.dumps(init(capabilities={"tasks": {}})),  # a capability whose shape the front does not check
        json.dumps(init(_meta={"progressToken": 1})),
        json.dumps(init(clientInfo={"name": "t"})),  # no version: the SDK's validation error, not an answer
        json.dumps({"jsonrpc": "2.0", "id": True, "method": "initialize", "params": init()["params"]}),
        json.dumps(modern("tools/list", 1, version="2099-01-01")),  # the SDK refuses an unsupported revision
        json.dumps(modern("tools/list", 1, capabilities={"sampling": {"tools": True}})),
        json.dumps(modern("tools/list", 1, capabilities={"extensions": {"io.example/x": {}}})),
        json.dumps(modern("tools/call", 1)),
    ],
)
def test_anything_else_first_is_left_to_the_sdk(entry: Entry, pipes: tuple[int, int, int, int], first: str) -> None:
    sent = lines(first, init(rid=9))
    got, opening = run_front(entry, pipes, sent)
    assert got == [] and opening == Opening(sent, None, False, 0)


def test_after_initialize_only_known_messages(entry: Entry, pipes: tuple[int, int, int, int]) -> None:
    """tools/list before the initialized notification, or with a cursor, is the SDK's (it answers otherwise)."""
    for after in (
        [request("tools/list", 2)],
        [INITIALIZED, request("tools/list", 2, {"cursor": "x"})],
        [INITIALIZED, request("tools/call", 2, {"name": "warp_handle_set", "arguments": {"handle": "a"}})],
        [INITIALIZED, modern("tools/list", 2)],
    ):
        to_front_r, to_front_w = os.pipe()
        from_front_r, from_front_w = os.pipe()
        got, opening = run_front(entry, (to_front_w, to_front_r, from_front_w, from_front_r), lines(init(), *after))
        assert got == [reply(1, entry.initialize["2025-11-25"])], after
        assert opening.lead == lines(init(), *after) and opening.drop_reply_to == 1, after
        for fd in (to_front_r, to_front_w, from_front_r):
            os.close(fd)


def test_end_of_input_stops_the_front(entry: Entry, pipes: tuple[int, int, int, int]) -> None:
    client_w, front_r, front_w, _client_r = pipes
    os.write(client_w, lines(init()))
    os.close(client_w)
    front = Front(entry, front_r, front_w)
    front.start()
    opening = front.handover()
    assert opening.lead == lines(init()) and opening.answered == 1


class Collect:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, item: Any) -> None:
        self.sent.append(item.message)

    async def aclose(self) -> None:
        pass


async def test_the_replayed_answer_is_dropped_and_only_it() -> None:
    """The SDK's first line answers the replayed initialize: dropped; from then on every message goes through. A
    first line that is something else (it never is with the SDK in uv.lock) is sent, not lost."""
    answer = SessionMessage(mcp_types.JSONRPCResponse(jsonrpc="2.0", id=7, result={}))
    later = SessionMessage(mcp_types.JSONRPCResponse(jsonrpc="2.0", id=7, result={"x": 1}))
    inner = Collect()
    stream = DropFirstReply(inner, 7)
    await stream.send(answer)
    await stream.send(later)
    assert inner.sent == [later.message]
    inner = Collect()
    stream = DropFirstReply(inner, 8)
    await stream.send(answer)
    assert inner.sent == [answer.message]
