"""The reservations scenario of the end-to-end tests: three agents (any transport) contend for project paths."""

from __future__ import annotations

import asyncio
import json

import mcp_types as types
from mcp import Client
from mcp.client.session import IncomingMessage

from nats_mcp.api.resource_uris import RESERVATIONS_URI
from tests.support.natsserver import wait_for
from tests.support.stdio import err, ok

ACQUIRE = "warp_reservations_acquire"


async def contend(a: Client, b: Client, c: Client) -> int:
    """A holds src/api/**; B is refused (holder listed, nothing taken), waits, gets in when A releases; a path escaping
    the project writes nothing; an expired reservation frees its path. Returns the largest fencing token seen."""
    await ok(a, "warp_handle_set", handle="alice")
    guid_a = (await ok(a, "warp_handle_get"))["agentGuid"]
    first = await ok(a, ACQUIRE, resources=["src/api/**"], reason="refactoring the API", ttlSeconds=600)
    assert first["granted"] and first["conflicts"] == []

    refused = await ok(b, ACQUIRE, resources=["docs/notes.md", "src/api/app.py"])
    assert not refused["granted"] and refused["reservationId"] is None
    [conflict] = refused["conflicts"]
    assert conflict["holderGuid"] == guid_a and conflict["holderHandle"] == "alice"
    assert (conflict["resource"], conflict["heldResource"], conflict["reason"]) == (
        "src/api/app.py",
        "src/api/**",
        "refactoring the API",
    )
    for bad in (["../outside"], ["/etc/passwd"], ["ok", "a\x00b"]):
        assert await err(c, ACQUIRE, resources=bad) == "invalid_argument"
    listed = (await ok(c, "warp_reservations_list"))["reservations"]
    assert [r["resources"] for r in listed] == [["src/api/**"]]  # nothing of B's or C's attempts was written

    # Only the holder may release; a waiting acquire gets through when it does, with a larger token.
    assert await err(b, "warp_reservations_release", reservationId=first["reservationId"]) == "forbidden"
    waiting = asyncio.create_task(ok(b, ACQUIRE, resources=["src/api/app.py"], waitMs=30_000))
    await wait_for(lambda: not waiting.done(), 1)
    await ok(a, "warp_reservations_release", reservationId=first["reservationId"])
    got = await asyncio.wait_for(waiting, 30)
    assert got["granted"] and got["fencingToken"] > first["fencingToken"]

    # An expired reservation frees the resource.
    short = await ok(c, ACQUIRE, resources=["tmp/build.log"], ttlSeconds=1)
    assert short["granted"] and short["fencingToken"] > got["fencingToken"]

    async def free() -> dict[str, object] | None:
        taken = await ok(a, ACQUIRE, resources=["tmp/**"])
        return taken if taken["granted"] else None

    late = await wait_for(free, 15, interval=0.2)
    assert isinstance(late["fencingToken"], int) and late["fencingToken"] > short["fencingToken"]
    return late["fencingToken"]


class Updates:
    """How many ``notifications/resources/updated`` of the reservations resource a client received."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ResourceUpdatedNotification) and message.params.uri == RESERVATIONS_URI:
            self.count += 1


async def read_reservations(client: Client) -> dict[str, object]:
    result = await client.read_resource(RESERVATIONS_URI)
    [content] = result.contents
    assert isinstance(content, types.TextResourceContents) and content.mime_type == "application/json"
    body: dict[str, object] = json.loads(content.text)
    return body
