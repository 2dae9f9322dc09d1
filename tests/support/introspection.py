"""A fake OAuth token-introspection server (RFC 7662) and its fixture."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

CLIENT_ID = "nats-mcp"


CLIENT_SECRET = "introspection-client-secret-1234"


NOW = 1_800_000_000.0


RESOURCE = "https://mcp.example.test/mcp"
"""This server's resource URL: the audience an introspected token must name when none is configured."""


@dataclass
class AuthServer:
    """An introspection endpoint: token -> answer, with Basic client auth, counting requests."""

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: int = 200
    hits: int = 0
    query_strings: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.query_strings.append(request.query_string)
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "invalid_client"}, status=401)
        if self.status != 200:
            return web.Response(status=self.status)
        form = await request.post()
        token = form.get("token")
        return web.json_response(self.answers.get(str(token), {"active": False}))


@pytest.fixture
async def auth_server() -> AsyncIterator[AuthServer]:
    server = AuthServer()
    app = web.Application()
    app.router.add_post("/introspect", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}/introspect"
    try:
        yield server
    finally:
        await runner.cleanup()


def active(sub: str = "carol", **extra: Any) -> dict[str, Any]:
    return {"active": True, "sub": sub, "exp": NOW + 3600, "iss": "https://as.example.test", "aud": RESOURCE, **extra}
