"""Boundary of the HTTP drain middleware and routine (ASGI, in process): what is refused, what is ended, and when."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from nats_mcp.transports.http import drain as drainage
from nats_mcp.transports.http.drain import Drain, DrainGate

SSE_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}


class Wire:
    """The server side of one request: what the app sent, and a body the client may or may not finish."""

    def __init__(self, body: list[bytes] | None = None) -> None:
        self.sent: list[Message] = []
        self.body = list(body or [b""])
        self.blocked = False
        self.done = asyncio.Event()

    async def receive(self) -> Message:
        if not self.body:
            await asyncio.Event().wait()  # a client that never sends the rest
        chunk = self.body.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.body)}

    async def send(self, message: Message) -> None:
        if self.blocked:
            await asyncio.Event().wait()  # a client that stopped reading: the write never completes
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.done.set()

    def status(self) -> int:
        return int(self.sent[0]["status"])

    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def body_text(self) -> str:
        return b"".join(m.get("body", b"") for m in self.sent[1:]).decode()

    def ended(self) -> bool:
        return self.done.is_set()


def scope(method: str = "POST", path: str = "/mcp") -> Scope:
    return {"type": "http", "method": method, "path": path, "headers": []}


class Stream:
    """An app that opens an SSE stream, sends one event, then waits for the client to go (http.disconnect)."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.finished = asyncio.Event()

    async def __call__(self, _scope: Scope, receive: Receive, send: Send) -> None:
        await send(SSE_START)
        await send({"type": "http.response.body", "body": b"id: 1\ndata: \n\n", "more_body": True})
        self.opened.set()
        await self.finished.wait()


class Reply:
    """An app that reads the body and answers JSON once ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.body = b""

    async def __call__(self, _scope: Scope, receive: Receive, send: Send) -> None:
        self.body = (await receive())["body"]
        self.started.set()
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"connection", b"keep-alive")]})
        await send({"type": "http.response.body", "body": b"{}"})


async def test_a_refused_request_is_a_whole_503_a_client_can_retry() -> None:
    drain = Drain(lambda: True, 1500)
    drain.phase = drainage.REFUSING
    app = Reply()
    wire = Wire([b'{"jsonrpc": "2.0", ', b'"id": 1}'])
    await DrainGate(app, drain, exempt=()).__call__(scope(), wire.receive, wire.send)
    assert not app.started.is_set()  # nothing reached the server
    assert wire.status() == 503
    assert (wire.headers()[b"retry-after"], wire.headers()[b"connection"]) == (b"1", b"close")
    assert json.loads(wire.body_text())["error"]["data"] == {"code": "draining", "retryAfterS": 1}
    assert wire.body == []  # the body was read before answering (no reset over unread bytes)
    assert drain.refused == 1


async def test_a_refusal_does_not_wait_for_a_body_that_never_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drainage, "REFUSAL_READ_TIMEOUT_S", 0.05)
    drain = Drain(lambda: True, 1500)
    drain.phase = drainage.REFUSING
    wire = Wire([b"{", b"the rest never comes"])
    wire.body.pop()  # more_body stays True; the next receive blocks
    await asyncio.wait_for(DrainGate(Reply(), drain, exempt=()).__call__(scope(), wire.receive, wire.send), 5)
    assert wire.status() == 503


async def test_probes_are_answered_and_not_counted_while_refusing() -> None:
    drain = Drain(lambda: True, 1500)
    drain.phase = drainage.CLOSING
    app = Reply()
    app.release.set()
    wire = Wire()
    await DrainGate(app, drain, exempt={"/readyz"}).__call__(scope("GET", "/readyz"), wire.receive, wire.send)
    assert wire.status() == 200 and drain.refused == 0


async def test_while_draining_answers_close_their_connection() -> None:
    drain = Drain(lambda: True, 1500)
    gate = DrainGate(app := Reply(), drain, exempt=())
    app.release.set()
    serving, draining = Wire(), Wire()
    await gate(scope(), serving.receive, serving.send)
    drain.begin()
    await gate(scope(), draining.receive, draining.send)
    assert serving.headers()[b"connection"] == b"keep-alive"
    assert [v for k, v in draining.sent[0]["headers"] if k == b"connection"] == [b"close"]
    assert draining.status() == 200


async def test_run_ends_get_streams_at_once_and_waits_for_calls_in_flight() -> None:
    drain = Drain(lambda: True, 1500)
    assert drain.ready()
    stream, call = Stream(), Reply()
    get_wire, post_wire = Wire(), Wire([b"{}"])
    get = asyncio.create_task(DrainGate(stream, drain, ()).__call__(scope("GET"), get_wire.receive, get_wire.send))
    post = asyncio.create_task(DrainGate(call, drain, ()).__call__(scope(), post_wire.receive, post_wire.send))
    await stream.opened.wait()
    await call.started.wait()
    running = asyncio.create_task(drain.run(0, 300))
    await asyncio.wait_for(get_wire.done.wait(), 5)
    assert not drain.ready()
    assert get_wire.sent[-2]["body"] == b"retry: 1500\n\n"
    assert not running.done()  # the call in flight holds the drain
    stream.finished.set()
    call.release.set()
    report = await asyncio.wait_for(running, 5)
    await asyncio.gather(get, post)
    assert (report.finished, report.ended, report.left, report.interrupted) == (1, 1, 0, False)
    assert post_wire.status() == 200


async def test_at_the_deadline_open_streams_end_and_a_stalled_one_is_left_to_uvicorn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(drainage, "END_STREAM_TIMEOUT_S", 0.05)
    drain = Drain(lambda: True, 700)
    streams = [Stream(), Stream()]
    wires = [Wire([b"{}"]), Wire([b"{}"])]
    tasks = [
        asyncio.create_task(DrainGate(s, drain, ()).__call__(scope(), w.receive, w.send))
        for s, w in zip(streams, wires, strict=True)
    ]
    for s in streams:
        await s.opened.wait()
    wires[1].blocked = True  # its client stopped reading
    report = await asyncio.wait_for(drain.run(0, 0.01), 5)
    assert wires[0].ended() and wires[0].sent[-2]["body"] == b"retry: 700\n\n"
    assert not wires[1].ended()
    assert (report.ended, report.left) == (1, 1)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_waiting_reads_are_told_to_answer_when_refusing_starts_not_before() -> None:
    call = Reply()  # a waiting read: it answers when told to (coord.waits.Waits.stop_waiting)
    drain = Drain(lambda: True, 1500, on_refusing=call.release.set)
    wire = Wire([b"{}"])
    task = asyncio.create_task(DrainGate(call, drain, ()).__call__(scope(), wire.receive, wire.send))
    await call.started.wait()
    drain.begin()  # draining, still serving: a wait goes on
    assert not call.release.is_set()
    report = await asyncio.wait_for(drain.run(0, 300), 5)  # would hold the drain 300 s had it not answered
    await task
    assert call.release.is_set() and wire.status() == 200
    assert (report.finished, report.left) == (1, 0)


async def test_interrupt_cuts_the_delay_and_the_wait_short() -> None:
    drain = Drain(lambda: True, 1500)
    call = Reply()
    wire = Wire([b"{}"])
    task = asyncio.create_task(DrainGate(call, drain, ()).__call__(scope(), wire.receive, wire.send))
    await call.started.wait()
    running = asyncio.create_task(drain.run(300, 300))
    drain.interrupt()  # a second signal
    report = await asyncio.wait_for(running, 5)
    assert report.interrupted and report.left == 1
    assert wire.sent == []  # a request that is not an SSE stream is left to uvicorn's linger
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_readiness_says_why() -> None:
    up = [True]
    drain = Drain(lambda: up[0], 1500)
    route: Any = drainage.readiness_route(drain)

    async def ask() -> tuple[int, dict[str, str]]:
        wire = Wire()
        await route.app({"type": "http", "method": "GET", "path": "/readyz", "headers": []}, wire.receive, wire.send)
        return wire.status(), json.loads(wire.body_text())

    assert await ask() == (200, {"status": "ready", "nats": "connected"})
    up[0] = False
    assert await ask() == (503, {"status": "not_ready", "nats": "disconnected"})
    up[0] = True
    drain.begin()
    assert await ask() == (503, {"status": "draining", "nats": "connected"})


async def test_requests_still_arriving_keep_the_port_open_until_they_stop_or_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A balancer that has not noticed yet still gets answers: the drain ends only after a quiet spell."""
    monkeypatch.setattr(drainage, "QUIET_S", 300)
    idle = Drain(lambda: True, 1500)
    assert (await asyncio.wait_for(idle.run(0, 600), 5)).refused == 0  # no request came for a while: done at once

    drain = Drain(lambda: True, 1500)
    drain.arrived()  # traffic up to the signal
    running = asyncio.create_task(drain.run(0, 600))
    await asyncio.wait({running}, timeout=0.05)  # nothing in flight: only the quiet spell holds it
    assert not running.done()
    wire = Wire([b"{}"])
    await DrainGate(Reply(), drain, ()).__call__(scope(), wire.receive, wire.send)
    assert wire.status() == 503
    await asyncio.wait({running}, timeout=0.05)
    assert not running.done()  # a request arrived just now: still listening
    drain.interrupt()
    assert (await asyncio.wait_for(running, 5)).refused == 1

    bounded = Drain(lambda: True, 1500)
    bounded.arrived()
    report = await asyncio.wait_for(bounded.run(0, 0.05), 5)  # the deadline ends the quiet spell too
    assert not report.interrupted
