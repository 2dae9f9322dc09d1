"""The HTTP session-presence boundary: an MCP session its client ends marks the agents it acted as offline.

Protocol 2025-11-25 clients hold a session (``Mcp-Session-Id``) and end it with ``DELETE`` when they leave; the
SDK answers 2xx only to the credential that opened the session. Then each agent that acted in it — unless
another live session of the same credential acts as it too — is marked offline in the registry, as a local
agent's process exit does, instead of reading online until its last heartbeat goes stale. Sessions that just
stop (a crash, the idle timeout) and 2026-07-28 clients (no sessions: each request stands alone) still go stale by
time; the dashboard shows them idle first. Which agents a session acted as is part of its record in NATS
(:mod:`nats_mcp.bus.sessions`), written by whichever process served the call, so the process that serves the
``DELETE`` knows them all.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from starlette.types import Scope

from nats_mcp.bus.sessions import SessionRecord, SessionStore
from nats_mcp.core.lru import LruTable
from nats_mcp.security.identity import Caller

log = logging.getLogger("nats_mcp.http")

SESSION_HEADER = b"mcp-session-id"
BODY_KEY = "nats_mcp.body"
"""Where the protocol gate leaves a POST's parsed JSON body in the ASGI scope (the initialize params are read there)."""
MAX_SESSIONS = 10_000
"""Sessions whose recorded agents this process remembers (the least recently used go first)."""
MAX_AGENTS_PER_SESSION = 8
LEAVE_TIMEOUT_S = 5.0

Leave = Callable[[Caller], Awaitable[None]]
Recorder = Callable[[str, Caller], Awaitable[None]]
"""Adds an agent to a session's record in NATS."""

_session: contextvars.ContextVar[str | None] = contextvars.ContextVar("nats_mcp_http_session", default=None)


def header(scope: Scope, name: bytes) -> str | None:
    """The value of a request header (``name`` lower case, as ASGI gives it)."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def enter_session(session: str | None) -> None:
    """The request being handled belongs to ``session`` (set by the session layer before the SDK serves it)."""
    _session.set(session)


def current_session() -> str | None:
    return _session.get()


class SessionAgents:
    """Which agents each MCP session acted as (recorded in NATS once per session and agent), and their leaving."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.recorder: Recorder | None = None
        """Set by the session layer (:mod:`roaming`): without one (no NATS), only this process's table counts."""
        self._leave: Leave | None = None
        self._table: LruTable[str, dict[str, Caller]] = LruTable(max_sessions)
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self, caller: Caller, leave: Leave) -> None:
        """The current request's session acts as ``caller`` (a no-op for requests without a session). Call it only
        once the request is authenticated: a session serves only the credential that opened it."""
        session = _session.get()
        if session is None:
            return
        self._leave = leave
        agents = self._table.get(session)
        if agents is None:
            agents = {}
            self._table.put(session, agents)
        if caller.guid in agents or len(agents) >= MAX_AGENTS_PER_SESSION:
            return
        agents[caller.guid] = caller
        if self.recorder is not None:
            task = asyncio.get_running_loop().create_task(self._record(session, caller), name="session-agent")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _record(self, session: str, caller: Caller) -> None:
        assert self.recorder is not None
        try:
            await self.recorder(session, caller)
        except Exception as exc:  # the agent then goes offline by time if this session ends
            log.warning("agent %s of MCP session %s not recorded in NATS: %s", caller.guid, session, exc)

    async def ended(self, session: str, record: SessionRecord | None, store: SessionStore | None) -> None:
        """The client ended ``session``: its agents that no other live session of its credential acts as leave."""
        local = self._table.pop(session) or {}
        agents = dict(local)
        for fields in record.agents if record is not None else ():
            try:
                agents.setdefault(str(fields["guid"]), Caller(**fields))
            except (TypeError, ValueError, KeyError):
                log.warning("MCP session %s: a recorded agent is malformed", session)
        if not agents or self._leave is None:
            return
        others: set[str] = set()
        if record is not None and store is not None:
            try:
                for other in await store.of_owner(record.owner):
                    if other.session != session:
                        others.update(str(a.get("guid")) for a in other.agents)
            except Exception as exc:
                log.warning("other sessions of MCP session %s's credential not read: %s", session, exc)
        for table in self._live_tables(session):
            others.update(table)
        for guid, caller in agents.items():
            if guid in others:
                continue
            try:
                await asyncio.wait_for(self._leave(caller), LEAVE_TIMEOUT_S)
            except Exception as exc:  # NATS away: the entry goes stale by time instead
                log.warning("could not mark agent %s offline at the end of its session: %s", guid, exc)

    def _live_tables(self, ended: str) -> list[dict[str, Caller]]:
        return [agents for session, agents in self._table.items() if session != ended]

    def __len__(self) -> int:
        return len(self._table)


def caller_fields(caller: Caller) -> dict[str, object]:
    """A ``Caller`` as a session record keeps it."""
    return asdict(caller)
