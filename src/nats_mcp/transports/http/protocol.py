"""The HTTP protocol-gate boundary: what ``/mcp`` answers before the SDK's session manager sees a request.

* an ``MCP-Protocol-Version`` this server does not speak: 400 with a JSON-RPC error naming the supported
  revisions (the SDK sent any unknown value to its 2026-07-28 entry, which answered an envelope error);
* a JSON-RPC batch (a JSON array): in protocol 2025-03-26 (and 2024-11-05) batches were allowed, so each
  message is served as its own request of the session and the responses come back as one JSON array; later
  revisions removed them, so it is a 400 with a JSON-RPC ``Invalid Request`` saying so (the SDK answered a
  pydantic validation dump);
* a new session (a POST with no ``Mcp-Session-Id``, the initialize handshake): bounded per principal, in count
  and in rate (429, audited like the guard's refusals) — the SDK's only bound was 10,000 sessions for
  everyone, which one key could fill.

The count is of the principal's sessions in NATS (every process's: :mod:`roaming`), plus the handshakes this process
is running for it; a session that ended (``DELETE``) or expired stops counting.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from mcp_types.jsonrpc import INVALID_REQUEST, UNSUPPORTED_PROTOCOL_VERSION
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nats_mcp.config.security import RateSettings
from nats_mcp.core.lru import LruTable
from nats_mcp.security.audit.event import AuditEvent, AuditRecorder
from nats_mcp.security.limits import RateLimiter
from nats_mcp.security.principal import Principal
from nats_mcp.transports.http.roaming import owner_of
from nats_mcp.transports.http.sessions import BODY_KEY, SESSION_HEADER, header

SUPPORTED_VERSIONS: tuple[str, ...] = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)
BATCH_VERSIONS = frozenset({"2024-11-05", "2025-03-26"})
"""Revisions whose streamable HTTP (or HTTP+SSE) transport allowed JSON-RPC batches."""
ASSUMED_VERSION = "2025-03-26"
"""What a request without ``MCP-Protocol-Version`` speaks (2025-06-18 and later clients always send it)."""
MAX_BATCH = 64
"""Messages in one batch: each is a request of its own, and the guard's rate limits count each."""
MAX_TRACKED_PRINCIPALS = 10_000
PRIMED_VERSION = "2025-11-25"
"""The handshake revision whose SSE streams start with a priming event (the SDK's rule: 2025-11-25 and later)."""

SessionCounter = Callable[[str, set[str]], Awaitable[int]]
"""(owner digest, the ids of the sessions this process opened for the principal) -> its open sessions."""
Primer = Callable[[str], Awaitable[tuple[str, int] | None]]
"""Stores a priming event for a session's standalone SSE stream: (its event id, the retry interval), or None."""

_VERSION_HEADER = b"mcp-protocol-version"
_SESSION_HEADER = SESSION_HEADER


def _error(
    status: int,
    message: str,
    code: int,
    data: Any = None,
    request_id: Any = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()
    return status, [(b"content-type", b"application/json"), *headers], body


async def _answer(send: Send, response: tuple[int, list[tuple[bytes, bytes]], bytes]) -> None:
    status, headers, body = response
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SessionCap:
    """Open MCP sessions per principal, and the rate at which a principal may open them."""

    def __init__(
        self,
        max_per_principal: int,
        rate: RateSettings,
        counter: SessionCounter,
        audit: AuditRecorder | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_per_principal = max_per_principal
        self.rate = RateLimiter(rate, MAX_TRACKED_PRINCIPALS, clock)
        self.counter = counter
        self.audit = audit
        self._sessions: LruTable[str, set[str]] = LruTable(MAX_TRACKED_PRINCIPALS)
        self._opening: dict[str, int] = {}

    async def count(self, key: str, owner: str) -> int:
        """Open sessions of the principal, plus its handshakes in flight here (they may each open one)."""
        held = self._sessions.get(key)
        return await self.counter(owner, held or set()) + self._opening.get(key, 0)

    async def admit(self, principal: Principal, owner: str) -> tuple[str, str, str, float | None] | None:
        """None if the principal may open a session now; else (audit kind, reason, message, retry after)."""
        key = principal.key
        if await self.count(key, owner) >= self.max_per_principal:
            return (
                "limit_exceeded",
                "too_many_sessions",
                f"this credential already has {self.max_per_principal} open MCP sessions, its limit: end one "
                "(DELETE with its Mcp-Session-Id) or reuse it",
                None,
            )
        wait = self.rate.take(key)
        if wait:
            return (
                "rate_limited",
                "initialize_rate_limited",
                f"too many new sessions from this credential; retry in {wait:.2f}s",
                wait,
            )
        self._opening[key] = self._opening.get(key, 0) + 1
        return None

    def opened(self, key: str, session: str | None) -> None:
        """The handshake admitted by :meth:`admit` ended; ``session``: the id it opened, if any."""
        left = self._opening.get(key, 1) - 1
        if left > 0:
            self._opening[key] = left
        else:
            self._opening.pop(key, None)
        if session is not None:
            held = self._sessions.get(key)
            if held is None:
                held = set()
                self._sessions.put(key, held)
            held.add(session)


class ProtocolGate:
    """ASGI wrapper of the SDK's ``/mcp`` app, inside its authentication (a request here has a verified principal)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int,
        cap: SessionCap | None = None,
        principal: Callable[[], Principal] | None = None,
        prime: Primer | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.cap = cap
        self.principal = principal
        self.prime = prime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        version = header(scope, _VERSION_HEADER)
        if version is not None and version not in SUPPORTED_VERSIONS:
            await _answer(
                send,
                _error(
                    400,
                    f"Unsupported MCP-Protocol-Version {version[:40]!r}: this server speaks "
                    f"{', '.join(SUPPORTED_VERSIONS)}",
                    UNSUPPORTED_PROTOCOL_VERSION,
                    {"supported": list(SUPPORTED_VERSIONS), "requested": version[:40]},
                ),
            )
            return
        if scope.get("method") == "GET":
            await self._get(scope, receive, send, version)
            return
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        messages, body = await _read_body(receive, self.max_body)
        replay = _replaying(messages, receive)
        parsed = _parse(body) if body is not None else None
        scope[BODY_KEY] = parsed  # the session layer records an initialize's params (transports/http/roaming.py)
        if isinstance(parsed, list):
            await self._batch(scope, parsed, version, send)
            return
        session = header(scope, _SESSION_HEADER)
        opening = session is None and (version is None or version in HANDSHAKE_PROTOCOL_VERSIONS)
        if not opening or self.cap is None or self.principal is None:
            await self.app(scope, replay, send)
            return
        await self._open(scope, replay, send, parsed)

    async def _get(self, scope: Scope, receive: Receive, send: Send, version: str | None) -> None:
        """The standalone SSE stream of a 2025-11-25 session starts with a priming event too (the SDK primes only the
        streams of POSTs and of resumptions), so a client can resume it with ``Last-Event-ID`` from the start."""
        session = header(scope, _SESSION_HEADER)
        prime = self.prime
        if prime is None or session is None or version != PRIMED_VERSION or header(scope, b"last-event-id"):
            await self.app(scope, receive, send)
            return

        async def priming(message: Message) -> None:
            await send(message)
            if message["type"] != "http.response.start" or int(message["status"]) != 200:
                return
            kind = next((v for k, v in message.get("headers", ()) if k.lower() == b"content-type"), b"")
            if not kind.startswith(b"text/event-stream"):
                return
            primed = await prime(session)
            if primed is not None:
                event_id, retry_ms = primed
                await send(
                    {
                        "type": "http.response.body",
                        "more_body": True,
                        "body": f"id: {event_id}\ndata: \nretry: {retry_ms}\n\n".encode(),
                    }
                )

        await self.app(scope, receive, priming)

    async def _open(self, scope: Scope, receive: Receive, send: Send, parsed: Any) -> None:
        assert self.cap is not None and self.principal is not None
        principal = self.principal()
        refused = await self.cap.admit(principal, owner_of(scope))
        if refused is not None:
            kind, reason, message, wait = refused
            if self.cap.audit is not None:
                self.cap.audit.record(
                    AuditEvent(
                        kind,  # type: ignore[arg-type]
                        principal=principal,
                        transport="http",
                        peer=principal.peer,
                        outcome="rate_limited" if wait else "limit_exceeded",
                        reason=reason,
                    ),
                )
            data: dict[str, Any] = {"code": "rate_limited" if wait else "limit_exceeded", "message": message}
            headers = []
            if wait:
                data["retryAfterS"] = round(wait, 3)
                headers.append((b"retry-after", str(max(1, math.ceil(wait))).encode()))
            request_id = parsed.get("id") if isinstance(parsed, dict) else None
            await _answer(send, _error(429, message, INVALID_REQUEST, data, request_id, headers))
            return
        opened: str | None = None

        async def watch(message: Message) -> None:
            nonlocal opened
            if message["type"] == "http.response.start" and int(message["status"]) < 400:
                for key, value in message.get("headers", ()):
                    if key.lower() == _SESSION_HEADER:
                        opened = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.cap.opened(principal.key, opened)

    async def _batch(self, scope: Scope, batch: list[Any], version: str | None, send: Send) -> None:
        revision = version or ASSUMED_VERSION
        if revision not in BATCH_VERSIONS:
            message = (
                f"Invalid Request: JSON-RPC batches are not part of MCP protocol revision {revision} (only "
                "2025-03-26 and earlier allowed them); send each message in its own POST"
            )
            await _answer(send, _error(400, message, INVALID_REQUEST))
            return
        if not batch or len(batch) > MAX_BATCH:
            await _answer(
                send, _error(400, f"Invalid Request: a batch holds 1 to {MAX_BATCH} messages", INVALID_REQUEST)
            )
            return
        if header(scope, _SESSION_HEADER) is None or any(
            isinstance(m, dict) and m.get("method") == "initialize" for m in batch
        ):
            await _answer(
                send,
                _error(
                    400,
                    "Invalid Request: initialize must not be part of a JSON-RPC batch "
                    "(2025-03-26); send it alone, then batch with its Mcp-Session-Id",
                    INVALID_REQUEST,
                ),
            )
            return
        # Each message is a request of its own to the SDK (which takes one message per POST), all at once: a
        # batch's messages may be served in any order, and a waiting one must not hold up the others.
        answers = await asyncio.gather(*(_sub_request(self.app, scope, m) for m in batch))
        for status, headers, body, _ in answers:
            if status >= 400 and status != 400:  # the session itself was refused (404, 403...): say so once
                await _answer(send, (status, headers, body))
                return
        responses = [r for _, _, _, found in answers for r in found]
        if not responses:
            await _answer(send, (202, [], b""))
            return
        session = [(k, v) for k, v in answers[0][1] if k == _SESSION_HEADER]
        await _answer(send, (200, [(b"content-type", b"application/json"), *session], json.dumps(responses).encode()))


async def _read_body(receive: Receive, limit: int) -> tuple[list[Message], bytes | None]:
    """The request's messages read so far and its body; body None when over ``limit`` (the SDK answers 413)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > limit:
            return messages, None
        if not message.get("more_body", False):
            return messages, b"".join(m.get("body", b"") for m in messages)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None  # the SDK answers the parse error


async def _sub_request(
    app: ASGIApp, scope: Scope, message: Any
) -> tuple[int, list[tuple[bytes, bytes]], bytes, list[Any]]:
    """One message of a batch as a request of its own: (status, headers, body, the JSON-RPC responses in it)."""
    body = json.dumps(message).encode()
    headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    sub = dict(scope, headers=headers)
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected until the answer is complete
        raise AssertionError("unreachable")

    status = 500
    out_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def collect(event: Message) -> None:
        nonlocal status, out_headers
        if event["type"] == "http.response.start":
            status = int(event["status"])
            out_headers = list(event.get("headers", ()))
        elif event["type"] == "http.response.body":
            chunks.append(event.get("body", b""))

    await app(sub, receive, collect)
    raw = b"".join(chunks)
    found: list[Any] = []
    kind = next((v for k, v in out_headers if k.lower() == b"content-type"), b"")
    if kind.startswith(b"text/event-stream"):
        for line in raw.decode(errors="replace").splitlines():
            if line.startswith("data:") and line[5:].strip():
                found.append(json.loads(line[5:]))
    elif raw:
        found.append(json.loads(raw))
    # Only responses go in a batch's answer (notifications the server sent meanwhile have no place in it).
    return status, out_headers, raw, [m for m in found if isinstance(m, dict) and "id" in m and "method" not in m]
