"""The metrics-exposition boundary: ``GET /metrics`` as a route of the HTTP transport and as a small listener of its own
(``--metrics-port``, for stdio and gRPC), served only to the addresses ``observe.metrics.allow_from`` lists.

Metrics carry no secret but do describe the deployment (tools used, failure rates), so they are not for
the world: loopback only by default, whatever the listener binds to. The listener is plain asyncio on the
server's own loop, so a scrape reads gauges the sampler wrote on the same thread (never half-updated).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from nats_mcp.observe.metrics import CONTENT_TYPE
from nats_mcp.security.ipfilter import IpFilter


class Exposes(Protocol):
    """Anything with a Prometheus text exposition: a server's Metrics, the fleet coordinator's."""

    def exposition(self) -> bytes: ...


log = logging.getLogger("nats_mcp.observe")

PATH = "/metrics"
_HEAD_LIMIT = 8192
_READ_TIMEOUT_S = 5.0
FORBIDDEN = "metrics are served only to the addresses observe.metrics.allow_from lists\n"


def metrics_filter(allow_from: Iterable[str]) -> IpFilter:
    """Who may read metrics: only the listed networks (an empty list: nobody with a network address)."""
    cidrs = list(allow_from)
    return IpFilter(cidrs or ["0.0.0.0/32"], ())


def http_route(metrics: Exposes, allow_from: Iterable[str]) -> Route:
    """``GET /metrics`` for the HTTP transport's Starlette app (no credential: the address filter decides)."""
    gate = metrics_filter(allow_from)

    async def endpoint(request: Request) -> Response:
        peer = request.client.host if request.client else None
        if peer is None or not gate.allowed(peer):
            return PlainTextResponse(FORBIDDEN, status_code=403)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return Route(PATH, endpoint, methods=["GET"])


class MetricsListener:
    """A minimal HTTP/1.x server answering ``GET /metrics`` (404 elsewhere, 403 to addresses not allowed)."""

    def __init__(self, metrics: Exposes, host: str, port: int, allow_from: Iterable[str]) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self.gate = metrics_filter(allow_from)
        self._server: asyncio.Server | None = None

    async def start(self, port_file: Path | None = None) -> int:
        """Listen; returns the bound port (written to ``port_file`` once listening)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        port = int(self._server.sockets[0].getsockname()[1])
        if port_file is not None:
            port_file.write_text(f"{port}\n")  # noqa: ASYNC240 - a few bytes, once
        log.info("metrics at http://%s:%d%s", self.host, port, PATH)
        return port

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = writer.get_extra_info("peername")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            status, body, ctype = self._answer(head[:_HEAD_LIMIT], peer[0] if peer else None)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that does not speak HTTP or hangs up: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, head: bytes, peer: str | None) -> tuple[str, bytes, str]:
        text = "text/plain; charset=utf-8"
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return "400 Bad Request", b"bad request\n", text
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if peer is None or not self.gate.allowed(peer):
            return "403 Forbidden", FORBIDDEN.encode(), text
        if target != PATH.encode():
            return "404 Not Found", b"not found; metrics are at /metrics\n", text
        if method != b"GET":
            return "405 Method Not Allowed", b"GET only\n", text
        return "200 OK", self.metrics.exposition(), CONTENT_TYPE
