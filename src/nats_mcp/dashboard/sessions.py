"""The dashboard session boundary: random session ids -> who logged in, bounded, with idle and absolute expiry.

The cookie holds only a random id (256 bits); the table is keyed by its SHA-256, so neither the id nor the
credential used to log in is kept in memory. Never the credential: a session remembers the principal, and the
app re-checks the credential's record (an API key's, a token's expiry) at most every few seconds while it is used.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nats_mcp.core.lru import LruTable
from nats_mcp.security.principal import Principal

COOKIE = "nmcp_dashboard"


@dataclass
class Session:
    principal: Principal
    created: float
    seen: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    checked: float = float("-inf")
    """When the credential it was opened with was last found still valid (the clock of :class:`Sessions`)."""


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """Server-side sessions; the least recently used go first when ``max_entries`` are held."""

    def __init__(self, idle_s: float, max_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic):
        self.idle_s = idle_s
        self.max_s = max_s
        self._table: LruTable[str, Session] = LruTable(max_entries)
        self._clock = clock

    def create(self, principal: Principal) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(principal, now, now)
        self._table.put(_key(session_id), session)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id (its idle timer restarted), or None: unknown, forged or expired."""
        if not session_id or len(session_id) > 128:
            return None
        key = _key(session_id)
        session = self._table.get(key)
        if session is None:
            return None
        now = self._clock()
        if now - session.seen > self.idle_s or now - session.created > self.max_s:
            self._table.pop(key)
            return None
        session.seen = now
        return session

    def now(self) -> float:
        return self._clock()

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._table.pop(_key(session_id))

    def __len__(self) -> int:
        return len(self._table)
