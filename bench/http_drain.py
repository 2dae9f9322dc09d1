"""Benchmark boundary of the HTTP drain gate (transports/http/drain.py): what counting requests costs per request.

    .venv/bin/python bench/http_drain.py [--quick]

In process, no sockets: the same ASGI app called bare and behind ``DrainGate`` (serving, not draining), alternately
in rounds, each sample a fixed number of requests: a JSON answer (one body read, one response) and an SSE answer
(a start and 10 events, as a tool call with progress notifications). Prints microseconds per request and the gated
/ bare ratio; the absolute difference is what a real request (milliseconds: bench/http_tools.py) pays.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from nats_mcp.transports.http.drain import Drain, DrainGate

SCOPE: Scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}
BODY: Message = {"type": "http.request", "body": b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call"}'}


async def json_app(_scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"jsonrpc": "2.0", "id": 1, "result": {}}'})


async def sse_app(_scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for i in range(10):
        await send({"type": "http.response.body", "body": f"id: {i}\ndata: {{}}\n\n".encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def receive() -> Message:
    return BODY


async def send(_message: Message) -> None:
    return None


async def sample(app: Callable[[Scope, Receive, Send], Awaitable[None]], n: int) -> float:
    """Microseconds per request over ``n`` requests."""
    started = time.perf_counter()
    for _ in range(n):
        await app(SCOPE, receive, send)
    return (time.perf_counter() - started) / n * 1e6


async def main(quick: bool) -> None:
    rounds, n = (5, 2_000) if quick else (15, 10_000)
    drain = Drain(lambda: True, 2000)
    print(f"{rounds} rounds x {n} requests, in process (no sockets)\n")
    print(f"{'answer':<6} {'bare us':>9} {'gated us':>9} {'+us':>7} {'ratio':>6}")
    for name, app in (("json", json_app), ("sse", sse_app)):
        gate = DrainGate(app, drain, exempt=())
        bare: list[float] = []
        gated: list[float] = []
        for r in range(rounds):
            order = [(bare, app), (gated, gate)]
            for samples, target in order if r % 2 == 0 else reversed(order):
                samples.append(await sample(target, n))
        b, g = statistics.median(bare), statistics.median(gated)
        print(f"{name:<6} {b:>9.2f} {g:>9.2f} {g - b:>7.2f} {g / b:>6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter samples")
    asyncio.run(main(parser.parse_args().quick))
