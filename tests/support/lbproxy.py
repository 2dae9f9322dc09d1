"""A per-request round-robin HTTP proxy on loopback: each request goes to the next backend, as a load balancer
without session affinity sends it (used to prove that any server process serves any request of any session).

Like a real balancer it tries the next backend only when a connection cannot be made (the request never reached
a process); anything else the backend answers, or a connection cut mid-answer, goes to the client as it is.
Responses stream through (SSE included) and end when either side ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import uvicorn

from tests.support.natsserver import wait_for

HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"host"}


@dataclass
class RoundRobin:
    """The ASGI proxy: ``backends`` (base URLs) may change while it runs (a rolling restart swaps them)."""

    backends: list[str]
    served: Counter[str] = field(default_factory=Counter)
    """Requests each backend answered."""
    retried: int = 0
    """Requests sent to another backend because one refused the connection."""
    failed: list[str] = field(default_factory=list)
    """Requests a backend took but did not answer (the connection broke before a response)."""
    refusals: list[str] = field(default_factory=list)
    """Requests a backend answered with an HTTP error (method, backend, status)."""
    _turn: int = 0
    _client: httpx2.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        path = scope["path"] + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
        client = self._client or httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=None), trust_env=False)
        self._client = client
        for _ in range(max(1, len(self.backends)) * 2):
            backend = self.backends[self._turn % len(self.backends)]
            self._turn += 1
            request = client.build_request(scope["method"], backend + path, headers=headers, content=body)
            try:
                response = await client.send(request, stream=True)
            except httpx2.ConnectError:
                self.retried += 1
                continue
            except httpx2.HTTPError as exc:  # sent, but no answer came: the client must decide (it may resend)
                self.failed.append(f"{backend}: {exc!r}")
                await send(
                    {"type": "http.response.start", "status": 502, "headers": [(b"content-type", b"text/plain")]}
                )
                await send({"type": "http.response.body", "body": f"{backend} gave no answer: {exc!r}".encode()})
                return
            self.served[backend] += 1
            if response.status_code >= 400:
                self.refusals.append(f"{scope['method']} {backend}: {response.status_code}")
            await self._relay(response, receive, send)
            return
        await send({"type": "http.response.start", "status": 502, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"no backend took the connection"})

    async def _relay(self, response: httpx2.Response, receive: Any, send: Any) -> None:
        out = [(k.encode(), v.encode()) for k, v in response.headers.items() if k.encode().lower() not in HOP_BY_HOP]
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})

        async def pump() -> None:
            with contextlib.suppress(httpx2.HTTPError):  # the backend cut the answer: the client sees it end
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        pumping = asyncio.ensure_future(pump())
        watching = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, watching):
                task.cancel()
            await asyncio.gather(pumping, watching, return_exceptions=True)
            await response.aclose()
        with contextlib.suppress(Exception):  # the client may be gone
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


@contextlib.asynccontextmanager
async def round_robin(backends: list[str]) -> AsyncIterator[tuple[str, RoundRobin]]:
    """The proxy listening on an OS-assigned loopback port: (its base URL, the proxy)."""
    proxy = RoundRobin(list(backends))
    config = uvicorn.Config(proxy, host="127.0.0.1", port=0, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    try:

        def listening() -> bool:
            if serving.done():
                serving.result()
                raise AssertionError("the proxy stopped before it listened")
            return bool(server.started)

        await wait_for(listening, 10, interval=0.01, message="the proxy did not listen")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", proxy
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 10)
        await proxy.aclose()
