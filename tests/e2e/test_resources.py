"""Resources over stdio with the real SDK client and nats-server: channel history, inbox peek, change notifications.

Notifications are checked on both revisions: ``resources/subscribe`` on the 2025-11-25 handshake
(delivered to the client's message handler) and ``subscriptions/listen`` on 2026-07-28. The NATS
side is checked too, through the server's monitoring endpoint: a subscription exists exactly while
someone listens.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.session import IncomingMessage
from mcp.client.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError

from nats_mcp.api.resource_uris import RESERVATIONS_URI
from nats_mcp.api.resources import INBOX_URI, RESOURCE_NOT_FOUND, channel_uri
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer, wait_for

CHANNELS = ("roadmap", "parallel-work", "errors")
ROADMAP = channel_uri("roadmap")
ERRORS = channel_uri("errors")
FAST = {"NATS_MCP_NATS_RECONNECT_BACKOFF_MIN_S": "0.05", "NATS_MCP_NATS_RECONNECT_BACKOFF_MAX_S": "0.5"}

# subscribe_resource/unsubscribe_resource are the 2025-11-25 way, used here on purpose
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")


class Notes:
    """``notifications/resources/updated`` a client received, with arrival times."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str]] = []

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.seen.append((time.monotonic(), message.params.uri))

    def count(self, uri: str) -> int:
        return sum(1 for _, u in self.seen if u == uri)

    def times(self, uri: str) -> list[float]:
        return [t for t, u in self.seen if u == uri]


@contextlib.asynccontextmanager
async def agent(
    tmp_path: Path, server: NatsServer, name: str, namespace: str, mode: str = "auto", notes: Notes | None = None
) -> AsyncIterator[Client]:
    """One agent = one `nats-mcp serve` process over stdio, with its own project directory."""
    project = tmp_path / name
    project.mkdir(exist_ok=True)
    env = isolated_env(
        tmp_path, NATS_URL=server.url, NATS_MCP_NAMESPACE=namespace, MCP_PROJECT_PATH=str(project), **FAST
    )
    params = StdioServerParameters(command=nats_mcp_exe(), args=["serve"], env=env, cwd=str(project))
    with (tmp_path / f"{name}.log").open("a") as errlog:
        client = Client(stdio_client(params, errlog=errlog), mode=mode, message_handler=notes)  # type: ignore[arg-type]
        async with client:
            yield client


async def ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, f"{tool} failed: {result.content}"
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def read_json(client: Client, uri: str) -> dict[str, Any]:
    result = await client.read_resource(uri)
    assert len(result.contents) == 1
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    assert content.uri == uri
    assert content.mime_type == "application/json"
    body: dict[str, Any] = json.loads(content.text)
    return body


def nats_subjects(server: NatsServer) -> list[str]:
    """Every subscription subject the NATS server holds (all clients)."""
    connz = server.monitor("connz?subs=1")
    return [s for c in connz.get("connections", []) for s in c.get("subscriptions_list") or []]


async def watched(server: NatsServer, subject_part: str, present: bool, what: str) -> None:
    def check() -> bool:
        return any(subject_part in s for s in nats_subjects(server)) is present

    await wait_for(check, 10, message=f"NATS subscription {what}: {subject_part} present={not present}")


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_list_read_and_peek(tmp_path: Path, nats_server: NatsServer, mode: str) -> None:
    async with (
        agent(tmp_path, nats_server, "reader", "team-r", mode=mode) as a,
        agent(tmp_path, nats_server, "writer", "team-r", mode="legacy") as b,
    ):
        assert a.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
        caps = a.server_capabilities.resources
        assert caps is not None and caps.subscribe is True

        listed = {r.uri: r for r in (await a.list_resources()).resources}
        assert set(listed) == {channel_uri(c) for c in CHANNELS} | {INBOX_URI, RESERVATIONS_URI}
        assert all(r.mime_type == "application/json" and r.description for r in listed.values())
        templates = (await a.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["nats-mcp://channels/{channel}"]

        # channel history: the newest 20, oldest first, in the channels-read tool's shape
        empty = await read_json(a, ROADMAP)
        assert empty["messages"] == [] and empty["hasMore"] is False
        await ok(b, "warp_handle_set", handle="bob")
        for i in range(25):
            await ok(b, "warp_channels_send", channel="roadmap", message=f"m{i:02d}")
        history = await read_json(a, ROADMAP)
        assert [m["message"] for m in history["messages"]] == [f"m{i:02d}" for i in range(5, 25)]
        assert history["channel"] == "roadmap" and history["total"] == 25 and history["hasMore"] is True
        assert set(history["messages"][0]) >= {"id", "sequence", "handle", "senderGuid", "message", "timestamp"}
        assert history["messages"][0]["handle"] == "bob"
        older = await ok(a, "warp_channels_read", channel="roadmap", cursor=history["nextCursor"])
        assert [m["message"] for m in older["messages"]] == [f"m{i:02d}" for i in range(5)]

        # inbox peek: counts and shows, never consumes
        me = (await ok(a, "warp_registry_register", agentType="reader"))["agent"]["guid"]
        await ok(b, "warp_registry_register", agentType="writer")
        assert (await read_json(a, INBOX_URI)) == {"agentGuid": me, "count": 0, "messages": [], "hasMore": False}
        for text in ("one", "two", "three"):
            await ok(b, "warp_messages_send_direct", recipientGuid=me, message=text)
        first = await read_json(a, INBOX_URI)
        second = await read_json(a, INBOX_URI)
        assert first == second
        assert first["count"] == 3 and first["hasMore"] is False
        assert [m["content"] for m in first["messages"]] == ["one", "two", "three"]
        assert first["messages"][0]["senderHandle"] == "bob"
        consumed = await ok(a, "warp_messages_read_direct")
        assert [m["content"] for m in consumed["messages"]] == ["one", "two", "three"]
        assert (await read_json(a, INBOX_URI))["count"] == 0

        # more mail than a peek shows
        for i in range(23):
            await ok(b, "warp_messages_send_direct", recipientGuid=me, message=f"d{i:02d}")
        peek = await read_json(a, INBOX_URI)
        assert peek["count"] == 23 and peek["hasMore"] is True
        assert [m["content"] for m in peek["messages"]] == [f"d{i:02d}" for i in range(20)]

        # URIs naming no resource are "not found" as the revision says (-32002 up to 2025-11-25, invalid params
        # from 2026-07-28); one too long to look up is invalid params on both; the server keeps serving
        missing = RESOURCE_NOT_FOUND if mode == "legacy" else types.INVALID_PARAMS
        for bad, code in (
            ("nats-mcp://channels/nope", missing),
            ("nats-mcp://channels/Road.Map", missing),
            ("nats-mcp://channels/", missing),
            ("nats-mcp://inbox/x", missing),
            ("nats-mcp://channels/roadmap?limit=5", missing),
            ("file:///etc/passwd", missing),
            ("nats-mcp://" + "x" * 2000, types.INVALID_PARAMS),
        ):
            with pytest.raises(MCPError) as caught:
                await a.read_resource(bad)
            assert caught.value.code == code, bad
        assert (await read_json(a, ROADMAP))["total"] == 25


@pytest.mark.slow
async def test_subscribe_on_the_2025_handshake(tmp_path: Path, nats_server: NatsServer) -> None:
    notes = Notes()
    async with (
        agent(tmp_path, nats_server, "sub", "team-s", mode="legacy", notes=notes) as a,
        agent(tmp_path, nats_server, "pub", "team-s") as b,
    ):
        assert a.protocol_version == "2025-11-25"
        me = (await ok(a, "warp_registry_register", agentType="listener"))["agent"]["guid"]
        await ok(b, "warp_registry_register", agentType="talker")
        await a.subscribe_resource(ROADMAP)
        await a.subscribe_resource(INBOX_URI)
        await a.subscribe_resource(ROADMAP)  # twice is once
        await watched(nats_server, ".chan.roadmap", True, "made on subscribe")

        await ok(b, "warp_channels_send", channel="roadmap", message="news")
        await wait_for(lambda: notes.count(ROADMAP) >= 1, 10, message="no resources/updated for the channel")
        assert notes.count(INBOX_URI) == 0
        assert (await read_json(a, ROADMAP))["messages"][-1]["message"] == "news"

        await ok(b, "warp_messages_send_direct", recipientGuid=me, message="psst")
        await wait_for(lambda: notes.count(INBOX_URI) >= 1, 10, message="no resources/updated for the inbox")

        # a burst is announced (coalesced to at most one notification per URI per 100 ms: the pace itself is
        # checked exactly on a virtual clock in tests/unit/api/test_resource_uris.py, not with this pipe's timing)
        before = notes.count(ROADMAP)
        for i in range(15):
            await ok(b, "warp_channels_send", channel="roadmap", message=f"burst {i}")
        await wait_for(lambda: notes.count(ROADMAP) > before, 10, message="no resources/updated for the burst")
        assert (await read_json(a, ROADMAP))["messages"][-1]["message"] == "burst 14"

        # other channels stay quiet; unsubscribe stops the notifications and the NATS subscription
        await ok(b, "warp_channels_send", channel="errors", message="elsewhere")
        await a.unsubscribe_resource(ROADMAP)
        await watched(nats_server, ".chan.roadmap", False, "dropped on unsubscribe")
        quiet, mail = notes.count(ROADMAP), notes.count(INBOX_URI)
        await ok(b, "warp_channels_send", channel="roadmap", message="unheard")
        # A barrier instead of a sleep: the DM sent after it reaches this server on the same NATS connection, after
        # the channel message, and is announced on the inbox watch; a channel watch still there would have been
        # poked first.
        await ok(b, "warp_messages_send_direct", recipientGuid=me, message="barrier")
        await wait_for(lambda: notes.count(INBOX_URI) > mail, 10, message="no resources/updated for the barrier DM")
        assert notes.count(ROADMAP) == quiet
        assert notes.count(ERRORS) == 0

        # bad URIs: invalid params
        for bad in ("nats-mcp://channels/nope", "nats-mcp://elsewhere"):
            with pytest.raises(MCPError) as caught:
                await a.subscribe_resource(bad)
            assert caught.value.code == types.INVALID_PARAMS

        # the inbox watch is on this agent's own subject only
        assert [s for s in nats_subjects(nats_server) if ".inbox." in s] == [f"nmcp.team-s.inbox.{me}"]
    # the session ended: its NATS subscriptions went with it
    await watched(nats_server, ".inbox.", False, "dropped at session end")


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_listen_on_2026_07_28(tmp_path: Path, nats_server: NatsServer) -> None:
    async with (
        agent(tmp_path, nats_server, "lis", "team-l", mode="auto") as a,
        agent(tmp_path, nats_server, "pub", "team-l", mode="legacy") as b,
    ):
        assert a.protocol_version == "2026-07-28"
        me = (await ok(a, "warp_registry_register", agentType="listener"))["agent"]["guid"]
        await ok(b, "warp_registry_register", agentType="talker")

        # resources/subscribe does not exist on this revision: listen is the way
        with pytest.raises(MCPError) as caught:
            await a.session.send_request(
                types.SubscribeRequest(params=types.SubscribeRequestParams(uri=ROADMAP)), types.EmptyResult
            )
        assert caught.value.code == types.METHOD_NOT_FOUND
        with pytest.raises(MCPError) as caught:
            async with a.listen(resource_subscriptions=["nats-mcp://channels/nope"]):
                pass
        assert caught.value.code == types.INVALID_PARAMS

        started = time.monotonic()
        async with a.listen(resource_subscriptions=[ROADMAP, INBOX_URI]) as sub:
            listen_ms = (time.monotonic() - started) * 1000
            assert set(sub.honored.resource_subscriptions or ()) == {ROADMAP, INBOX_URI}
            await watched(nats_server, ".chan.roadmap", True, "made on listen")

            async def next_uri() -> str:
                with anyio.fail_after(10):
                    event = await sub.__anext__()
                assert isinstance(event, ResourceUpdated)
                return event.uri

            sent = time.monotonic()
            await ok(b, "warp_channels_send", channel="roadmap", message="news")
            assert await next_uri() == ROADMAP
            latency_ms = (time.monotonic() - sent) * 1000
            assert (await read_json(a, ROADMAP))["messages"][-1]["message"] == "news"
            await ok(b, "warp_messages_send_direct", recipientGuid=me, message="psst")
            assert await next_uri() == INBOX_URI
            assert (await read_json(a, INBOX_URI))["count"] == 1
        # the stream ended: its NATS subscriptions went with it, and the server still serves
        await watched(nats_server, ".chan.roadmap", False, "dropped when the stream ended")
        await watched(nats_server, ".inbox.", False, "dropped when the stream ended")
        assert (await read_json(a, INBOX_URI))["count"] == 1
    print(f"\nlisten (ack): {listen_ms:.1f} ms; send -> event: {latency_ms:.1f} ms")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_notifications_survive_a_nats_restart(tmp_path: Path, nats_server: NatsServer, mode: str) -> None:
    notes = Notes()
    async with (
        agent(tmp_path, nats_server, "sub", "team-x", mode=mode, notes=notes) as a,
        agent(tmp_path, nats_server, "pub", "team-x", mode="legacy") as b,
        contextlib.AsyncExitStack() as stack,
    ):
        await ok(b, "warp_handle_set", handle="bob")
        if mode == "legacy":
            await a.subscribe_resource(ROADMAP)
        else:
            await stack.enter_async_context(a.listen(resource_subscriptions=[ROADMAP]))  # events tee to notes
        await watched(nats_server, ".chan.roadmap", True, "made")
        nats_server.restart()

        # after the reconnect: the subscription is back, and a "look again" notification went out
        await watched(nats_server, ".chan.roadmap", True, "made again after the restart")
        await wait_for(lambda: notes.count(ROADMAP) >= 1, 20, message="no notification after the reconnect")

        async def delivered() -> bool:
            before = notes.count(ROADMAP)
            result = await b.call_tool("warp_channels_send", {"channel": "roadmap", "message": "after"})
            if result.is_error:
                return False
            with anyio.move_on_after(2):
                while notes.count(ROADMAP) == before:
                    await anyio.sleep(0.02)
            return notes.count(ROADMAP) > before

        await wait_for(delivered, 30, message="no notification for a message sent after the restart")


async def test_a_2025_connection_takes_its_watches_with_it(tmp_path: Path, nats_server: NatsServer) -> None:
    """In process (SDK in-memory transport, real NATS): the watches hang on the connection and end with it."""
    from nats_mcp.api.resource_feeds import PROCESS_FEED
    from nats_mcp.api.resources import ResourceSurface
    from nats_mcp.api.server import build_server
    from nats_mcp.bus.connection import NatsConnection
    from nats_mcp.coord.service import Coordinator
    from tests.support.env import settings_for

    settings = settings_for(tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE="team-i")
    conn = NatsConnection(settings)
    coordinator = Coordinator(conn, settings)
    conn.add_listener(coordinator.on_nats_event)
    conn.start()
    try:
        server = build_server(coordinator, coordinator.local_caller)
        entry = server.get_request_handler("resources/subscribe")
        assert entry is not None
        surface = entry.handler.__self__  # type: ignore[attr-defined]
        assert isinstance(surface, ResourceSurface)
        watcher = surface.watcher.subjects
        notes = Notes()
        for _ in range(2):  # a second connection to the same server starts clean
            async with Client(server, mode="legacy", message_handler=notes) as c:
                await c.subscribe_resource(ROADMAP)
                await c.subscribe_resource(INBOX_URI)
                assert watcher.subjects.get("nmcp.team-i.chan.roadmap") == 1
                assert [n for s, n in watcher.subjects.items() if ".inbox." in s] == [1]
                assert len(surface._feeds) == 1
                assert next(iter(surface._feeds)) is not PROCESS_FEED  # keyed by the SDK connection: its exit stack
                before = notes.count(ROADMAP)
                await ok(c, "warp_handle_set", handle="self")
                await ok(c, "warp_channels_send", channel="roadmap", message="to myself")
                await wait_for(lambda n=before: notes.count(ROADMAP) > n, 10, message="no notification in process")
            assert surface._feeds == {}
            assert watcher.subjects == {} and watcher.subscribed == set()
            await watched(nats_server, ".chan.roadmap", False, "dropped with the connection")
    finally:
        await coordinator.close()
        await conn.close()
