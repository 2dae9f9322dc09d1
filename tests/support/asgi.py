"""One POST to an ASGI app in process: the scope as the protocol gate leaves it (the parsed body under BODY_KEY), a
receive that gives the body once and then waits (for ``disconnect``, or for ever), and the messages sent back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.types import Message

from nats_mcp.transports.http.sessions import BODY_KEY


@dataclass
class Post:
    """An exchange to pass to an app as ``app(post.scope, post.receive, post.send)``; ``sent`` fills as it answers."""

    scope: dict[str, Any]
    raw: bytes
    disconnect: anyio.Event | None = None
    sent: list[Message] = field(default_factory=list)
    _given: bool = False

    async def receive(self) -> Message:
        if not self._given:
            self._given = True
            return {"type": "http.request", "body": self.raw, "more_body": False}
        if self.disconnect is not None:
            await self.disconnect.wait()
            return {"type": "http.disconnect"}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def post(body: dict[str, Any], headers: list[tuple[bytes, bytes]], disconnect: anyio.Event | None = None) -> Post:
    """A JSON POST of ``body`` to /mcp with ``headers`` (content type and length added)."""
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers, (b"content-length", str(len(raw)).encode())],
        BODY_KEY: body,  # what the protocol gate leaves for the layers behind it
    }
    return Post(scope, raw, disconnect)
