"""The HTTP session-presence boundary: an MCP session its client ends marks the agents it acted as offline.

Protocol 2025-11-25 clients hold a session (``Mcp-Session-Id``) and end it with ``DELETE`` when they leave; the
SDK answers 2xx only to the credential that opened the session. Then each agent that acted in it — unless
another live session of this process acts as it too — is marked offline in the registry, as a local agent's
process exit does, instead of reading online until its last heartbeat goes stale. Sessions that just stop (a
crash, the SDK's idle timeout) and 2026-07-28 clients (no sessions: each request stands alone) still go
stale by time; the dashboard shows them idle first. Which agents a session acted as is per process (the SDK
keeps each session in the process that opened it); what readers see is the registry entry in NATS.

Known limit: one agent (credential and agent name) with live sessions on two server processes at once reads
offline when either session ends, and stays so until it registers again (an entry set offline is not
heartbeated) — the same as a local agent that deregisters.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nats_mcp.security.identity import Caller

log = logging.getLogger("nats_mcp.http")

SESSION_HEADER = b"mcp-session-id"
MAX_SESSIONS = 10_000
"""Sessions remembered (the SDK's own default bound on open sessions); the least recently used go first."""
MAX_AGENTS_PER_SESSION = 8
LEAVE_TIMEOUT_S = 5.0

Leave = Callable[[Caller], Awaitable[None]]

_session: contextvars.ContextVar[str | None] = contextvars.ContextVar("nats_mcp_http_session", default=None)


class SessionAgents:
    """Which agents each MCP session of this process acted as, and what marks one as gone."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        self._table: OrderedDict[str, dict[str, tuple[Caller, Leave]]] = OrderedDict()  # least recently used first

    def bind(self, caller: Caller, leave: Leave) -> None:
        """The current request's session acts as ``caller`` (a no-op for requests without a session). Call it only
        once the request is authenticated: the SDK serves a session's requests to the credential that opened it."""
        session = _session.get()
        if session is None:
            return
        agents = self._table.get(session)
        if agents is None:
            self._table[session] = {caller.guid: (caller, leave)}
            while len(self._table) > self.max_sessions:
                self._table.popitem(last=False)
            return
        self._table.move_to_end(session)
        if caller.guid not in agents and len(agents) < MAX_AGENTS_PER_SESSION:
            agents[caller.guid] = (caller, leave)

    def acting(self, guid: str) -> bool:
        """Whether a remembered session acts as this agent."""
        return any(guid in agents for agents in self._table.values())

    async def ended(self, session: str) -> None:
        """The client ended ``session``: its agents that no other session here acts as leave."""
        agents = self._table.pop(session, None)
        for guid, (caller, leave) in (agents or {}).items():
            if self.acting(guid):
                continue
            try:
                await asyncio.wait_for(leave(caller), LEAVE_TIMEOUT_S)
            except Exception as exc:  # NATS away: the entry goes stale by time instead
                log.warning("could not mark agent %s offline at the end of its session: %s", guid, exc)

    def __len__(self) -> int:
        return len(self._table)


class SessionEnds:
    """ASGI middleware: remembers each request's session id (for :meth:`SessionAgents.bind`) and, when a ``DELETE``
    of a session was answered 2xx (the session's own credential ended it), lets its agents leave."""

    def __init__(self, app: ASGIApp, agents: SessionAgents) -> None:
        self.app = app
        self.agents = agents

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = None
        for name, value in scope.get("headers", ()):
            if name == SESSION_HEADER:
                session = value.decode("latin-1")[:128]
        _session.set(session)
        if session is None or scope.get("method") != "DELETE":
            await self.app(scope, receive, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if 200 <= status < 300:
            await self.agents.ended(session)
