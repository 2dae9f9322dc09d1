"""The HTTP drain boundary: readiness, and how a stopping server lets go of its requests without breaking any.

A stopping replica (SIGTERM in a rolling restart) goes through :meth:`Drain.run`:

1. **draining** — ``GET /readyz`` answers 503 at once, so load balancers stop sending; requests are still served
   for ``http.drain_delay_s`` (those already on their way), each answer with ``Connection: close`` so no client
   keeps a connection to this replica;
2. **refusing** — a new request is answered 503 with ``Retry-After`` and ``Connection: close`` before anything
   reaches the MCP server, so a client or proxy can send it to another replica (it was not started here); so is
   one on a keep-alive connection opened before the drain (closing idle connections here would race a client
   writing on one, which then sees a reset instead of an answer; uvicorn closes them at the end, once none has
   been used for ``QUIET_S``). Streams that never end by themselves (``GET`` SSE streams,
   ``subscriptions/listen``) end now with an SSE ``retry:`` field, and the client reconnects (to another replica,
   resuming with ``Last-Event-ID``); reads waiting for a message (``waitMs``) answer now with what they have (an
   empty page: the client asks again, elsewhere); requests in flight get until ``http.drain_timeout_s`` to finish;
3. **closing** — once nothing is in flight and no request arrived for ``QUIET_S`` (a balancer that is late still
   gets answers), at the latest at the deadline (at once on a second signal), every SSE stream still open ends
   with the same hint; the caller then stops uvicorn (the port closes), which cancels what is left after a short
   linger.

The whole drain lasts at most ``drain_delay_s`` + ``drain_timeout_s`` (+ the linger); a second signal cuts it short.

State lives in NATS, so a request refused or a stream ended here carries on on any other replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("nats_mcp.http")

SERVING, DRAINING, REFUSING, CLOSING = "serving", "draining", "refusing", "closing"
RETRY_AFTER_S = 1
"""``Retry-After`` of a refused request: another replica can take it at once."""
END_STREAM_TIMEOUT_S = 2.0
"""How long ending one stream may wait for its writer: a client that stopped reading blocks writes, and uvicorn
cancels such a request after the drain anyway."""
REFUSAL_BODY_LIMIT = 1024 * 1024
REFUSAL_READ_TIMEOUT_S = 1.0
"""A refused request's body is read (up to these bounds) before the answer: closing a socket with unread bytes
sends a reset that can reach the client before the 503 does."""
QUIET_S = 0.5
"""Before the server stops listening, how long no request may have arrived: while a load balancer that has not
noticed yet still sends, requests are answered (refused, retried elsewhere) rather than met by a closed port or a
reset of connections the client had just opened."""
SNIFF_LIMIT = 64 * 1024
LISTEN = b"subscriptions/listen"
SSE = b"text/event-stream"


@dataclass(frozen=True)
class DrainReport:
    """What a drain did: requests that finished while it ran, streams ended with the hint, requests refused, and
    requests still open at its end (uvicorn cancels them)."""

    finished: int
    ended: int
    refused: int
    left: int
    interrupted: bool


class Flight:
    """One request being served: whether its answer is an SSE stream, and ending that stream with a ``retry:``."""

    def __init__(self, method: str) -> None:
        self.standing = method == "GET"
        """A stream that does not end by itself: ended as soon as the drain refuses new requests."""
        self.sse = False
        self.closing = False
        self.done = False
        self.cut = False
        """Ended by the drain (with the hint), not by the app."""
        self._lock = asyncio.Lock()
        self._send: Send | None = None
        self._retry_ms = 0

    def wrap(self, send: Send, draining: Callable[[], bool]) -> Send:
        self._send = send

        async def sending(message: Message) -> None:
            async with self._lock:
                if self.done:
                    return  # we ended the response; the app's later writes have nowhere to go
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", ()))
                    self.sse = any(k.lower() == b"content-type" and v.startswith(SSE) for k, v in headers)
                    if draining():  # the client should come back through the load balancer, not to us
                        headers = [(k, v) for k, v in headers if k.lower() != b"connection"]
                        message = {**message, "headers": [*headers, (b"connection", b"close")]}
                elif not message.get("more_body", False):
                    self.done = True
                await send(message)
                if self.closing and self.sse and not self.done:
                    await self._finish()

        return sending

    def close_soon(self, retry_ms: int) -> None:
        """End the SSE stream with a reconnect hint as soon as it writes (its response has not started yet)."""
        self._retry_ms = retry_ms
        self.closing = True

    async def end(self, retry_ms: int) -> bool:
        """End the SSE stream with a reconnect hint (now, or once its response starts); True if it was ended now."""
        self.close_soon(retry_ms)
        try:
            async with asyncio.timeout(END_STREAM_TIMEOUT_S):
                async with self._lock:
                    if self.sse and not self.done:
                        await self._finish()
                        return True
        except TimeoutError:
            log.warning("drain: an SSE stream whose client does not read could not be ended; it is cut at the end")
        return False

    async def _finish(self) -> None:
        # Whole events go out one per message, so this lands between two events; the final empty chunk ends the
        # response, after which uvicorn answers the app's receive() with http.disconnect and its SSE writer stops.
        assert self._send is not None
        hint = f"retry: {self._retry_ms}\n\n".encode()
        await self._send({"type": "http.response.body", "body": hint, "more_body": True})
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        self.done = self.cut = True


class Drain:
    """The drain state of one HTTP server process: readiness, the requests in flight, and the drain routine."""

    def __init__(
        self, connected: Callable[[], bool], retry_ms: int, *, on_refusing: Callable[[], None] | None = None
    ) -> None:
        self.connected = connected
        self.retry_ms = retry_ms
        self.on_refusing = on_refusing
        """Called when new requests start being refused: waiting reads (``waitMs``) answer then, empty, rather than
        hold the drain up to ``http.drain_timeout_s`` and be cut."""
        self.phase = SERVING
        self._flights: set[Flight] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._interrupt = asyncio.Event()
        self._finished = 0
        self._last_arrival = 0.0
        self.refused = 0

    @property
    def draining(self) -> bool:
        return self.phase != SERVING

    @property
    def refusing(self) -> bool:
        return self.phase in (REFUSING, CLOSING)

    def ready(self) -> bool:
        return self.phase == SERVING and self.connected()

    def begin(self) -> None:
        """Readiness false from now on (the signal handler calls this first, synchronously)."""
        if self.phase == SERVING:
            self.phase = DRAINING
            log.info("draining: /readyz answers 503; %d request(s) in flight", len(self._flights))

    def interrupt(self) -> None:
        """A second signal: stop waiting, end the streams, stop."""
        self.begin()
        if not self._interrupt.is_set():
            log.warning("draining cut short by a second signal")
        self._interrupt.set()

    async def run(self, delay_s: float, timeout_s: float) -> DrainReport:
        """The whole drain (module docstring): ``delay_s`` still serving, then refusing new requests while those
        in flight get ``timeout_s`` to finish; returns at once after :meth:`interrupt`."""
        self.begin()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._interrupt.wait(), delay_s)
        self.phase = REFUSING
        if self.on_refusing is not None:
            self.on_refusing()
        ended = await self._end([f for f in self._flights if f.standing])
        log.info(
            "draining: refusing new requests; %d stream(s) ended with a reconnect hint, %d request(s) in flight",
            ended,
            sum(1 for f in self._flights if not f.done),
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle_or_interrupt(), timeout_s)
        while not self._interrupt.is_set() and (quiet := QUIET_S - (loop.time() - self._last_arrival)) > 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._interrupt.wait(), min(quiet, remaining))
        self.phase = CLOSING
        ended += await self._end([f for f in self._flights if not f.standing])
        left = sum(1 for f in self._flights if not f.done)
        report = DrainReport(self._finished, ended, self.refused, left, self._interrupt.is_set())
        log.info(
            "drained: %d request(s) finished, %d stream(s) ended with a reconnect hint, %d refused, %d still open",
            report.finished,
            report.ended,
            report.refused,
            report.left,
        )
        return report

    async def _end(self, flights: list[Flight]) -> int:
        return sum(await asyncio.gather(*(f.end(self.retry_ms) for f in flights)))

    async def _idle_or_interrupt(self) -> None:
        idle = asyncio.ensure_future(self._idle.wait())
        stop = asyncio.ensure_future(self._interrupt.wait())
        try:
            await asyncio.wait([idle, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
            stop.cancel()

    def arrived(self) -> None:
        """A request (not a probe) arrived: the drain keeps listening until they stop coming (``QUIET_S``)."""
        self._last_arrival = asyncio.get_running_loop().time()

    def add(self, flight: Flight) -> None:
        self._flights.add(flight)
        self._idle.clear()

    def remove(self, flight: Flight) -> None:
        self._flights.discard(flight)
        if self.draining and not flight.cut:
            self._finished += 1
        if not self._flights:
            self._idle.set()


class DrainGate:
    """ASGI middleware (outermost): counts requests in flight, refuses new ones while the drain refuses, and lets
    :class:`Drain` end their SSE streams. ``exempt`` paths (probes, metrics) are always served and never counted."""

    def __init__(self, app: ASGIApp, drain: Drain, exempt: Collection[str]) -> None:
        self.app = app
        self.drain = drain
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        drain = self.drain
        drain.arrived()
        if drain.refusing:
            await self._refuse(scope, receive, send)
            return
        flight = Flight(str(scope.get("method", "")))
        drain.add(flight)
        try:
            await self.app(scope, self._sniff(receive, flight), flight.wrap(send, lambda: drain.draining))
        finally:
            drain.remove(flight)

    def _sniff(self, receive: Receive, flight: Flight) -> Receive:
        """Marks a ``subscriptions/listen`` POST as a standing stream (it lasts until the client cancels it)."""
        body = bytearray()

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) <= SNIFF_LIMIT:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False) and LISTEN in body and _is_listen(bytes(body)):
                    flight.standing = True
                    if self.drain.refusing:
                        flight.close_soon(self.drain.retry_ms)
            return message

        return receiving

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.drain.refused += 1
        read = 0
        try:
            async with asyncio.timeout(REFUSAL_READ_TIMEOUT_S):
                while read <= REFUSAL_BODY_LIMIT:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client has gone
                    read += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            pass
        body = {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": -32000,
                "message": "this server is shutting down: send the request again (to another replica)",
                "data": {"code": "draining", "retryAfterS": RETRY_AFTER_S},
            },
        }
        headers = {"retry-after": str(RETRY_AFTER_S), "connection": "close", "cache-control": "no-store"}
        await JSONResponse(body, status_code=503, headers=headers)(scope, receive, send)


class OnSignals:
    """A uvicorn server's SIGTERM/SIGINT: the first drains (:meth:`Drain.run`) and then stops the server; a later
    one cuts the drain short. What runs after the server (the authenticator, the runtime: the audit chain's end, the
    NATS connection) runs either way."""

    def __init__(self, drain: Drain, server: uvicorn.Server, delay_s: float, timeout_s: float) -> None:
        self.drain, self.server, self.delay_s, self.timeout_s = drain, server, delay_s, timeout_s
        self.task: asyncio.Task[None] | None = None

    def signal(self) -> None:
        if self.task is None:
            self.drain.begin()  # readiness false before anything else happens
            self.task = asyncio.create_task(self._run(), name="http-drain")
        else:
            self.drain.interrupt()

    async def _run(self) -> None:
        try:
            await self.drain.run(self.delay_s, self.timeout_s)
        finally:
            self.server.should_exit = True  # uvicorn's shutdown: listening socket, linger, lifespan

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


def _is_listen(body: bytes) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("method") == LISTEN.decode()


def readiness_route(drain: Drain) -> BaseRoute:
    """``GET /readyz``: 200 while serving with NATS connected; 503 once draining (or without NATS) — for load
    balancers and Kubernetes readiness. ``/healthz`` stays the liveness answer (200 while draining)."""

    async def readyz(_request: Request) -> Response:
        up = drain.connected()
        status = "ready" if drain.ready() else "draining" if drain.draining else "not_ready"
        body = {"status": status, "nats": "connected" if up else "disconnected"}
        return JSONResponse(body, status_code=200 if status == "ready" else 503, headers={"cache-control": "no-store"})

    return Route("/readyz", readyz, methods=["GET"])
