"""The abuse-limits boundary: rate limits, lockout, pooled-resource shares, agent-name caps, size and depth limits.

All state lives in memory and is bounded: each table keeps at most ``max_entries`` keys and drops the
least recently used one first. (An attacker who floods with fresh keys can push an old key out and so
reset its bucket; the per-address limit, which the attacker cannot multiply as easily, still applies.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from nats_mcp.config.security import LockoutSettings, RateSettings, ShareSettings
from nats_mcp.coord.checks import json_depth
from nats_mcp.core.lru import LruTable

T = TypeVar("T")
Clock = Callable[[], float]


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """One token bucket per key: ``burst`` calls at once, refilled at ``rate_per_s``."""

    def __init__(self, settings: RateSettings, max_entries: int, clock: Clock = time.monotonic) -> None:
        self.rate = settings.rate_per_s
        self.burst = float(settings.burst)
        self._buckets: LruTable[str, _Bucket] = LruTable(max_entries)
        self._clock = clock

    def take(self, key: str) -> float:
        """Spend one token: 0.0 if the call may go ahead, else the seconds until a token is back."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets.put(key, bucket)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def left(self, key: str) -> float:
        """The share of the burst ``key`` could spend right now (1.0 for a key not seen), spending nothing."""
        bucket = self._buckets.get(key)
        if bucket is None or self.burst <= 0:
            return 1.0
        tokens = min(self.burst, bucket.tokens + (self._clock() - bucket.stamp) * self.rate)
        return tokens / self.burst


@dataclass
class _Failures:
    count: int
    first: float
    locked_until: float


class Lockout:
    """Failed authentications per key (the guard uses the sender's address, never a claimed identity): locked after
    ``max_failures`` within ``window_s``, for ``base_s`` doubling with every further failure, up to ``max_s``.
    :meth:`success` clears a key (the guard does not call it: an attacker would clear its own address)."""

    def __init__(self, settings: LockoutSettings, max_entries: int, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self._table: LruTable[str, _Failures] = LruTable(max_entries)
        self._clock = clock

    def locked_for(self, key: str) -> float:
        """Seconds the key stays locked (0.0: not locked)."""
        entry = self._table.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.locked_until - self._clock())

    def failure(self, key: str) -> float:
        """Count a failure; returns the lock it causes in seconds (0.0 while under the threshold)."""
        s, now = self.settings, self._clock()
        entry = self._table.get(key)
        if entry is None or (now - entry.first > s.window_s and entry.locked_until <= now):
            entry = _Failures(0, now, 0.0)
        entry.count += 1
        if entry.count >= s.max_failures:
            lock = min(s.max_s, s.base_s * 2 ** (entry.count - s.max_failures))
            entry.locked_until = now + lock
        self._table.put(key, entry)
        return max(0.0, entry.locked_until - now)

    def success(self, key: str) -> None:
        self._table.pop(key)


ShareRefusal = Literal["share", "pool"]


class Shares:
    """Slots of one pooled resource: ``total`` in all, at most ``per_principal`` held under one key.

    Bounded by construction: a key is only kept while it holds a slot, and at most ``total`` slots are held.
    """

    def __init__(self, settings: ShareSettings) -> None:
        self.total = settings.total
        self.per_principal = min(settings.per_principal, settings.total)
        self._held: dict[str, int] = {}
        self.in_use = 0

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def take(self, key: str) -> ShareRefusal | None:
        """Take a slot for ``key``: None when taken, else what is exhausted (the key's share, or the pool)."""
        mine = self._held.get(key, 0)
        if mine >= self.per_principal:
            return "share"
        if self.in_use >= self.total:
            return "pool"
        self._held[key] = mine + 1
        self.in_use += 1
        return None

    def give(self, key: str) -> None:
        """Give back a slot :meth:`take` handed out."""
        mine = self._held.get(key, 0)
        if mine <= 0:
            return
        if mine == 1:
            del self._held[key]
        else:
            self._held[key] = mine - 1
        self.in_use -= 1


class AgentNames:
    """The distinct agent names each principal acts as: at most ``limit(key)`` at once; a name unused for
    ``idle_s`` is forgotten (and no longer counts). Bounded: ``max_entries`` principals, ``limit`` names each."""

    def __init__(self, idle_s: float, max_entries: int, clock: Clock = time.monotonic) -> None:
        self.idle_s = idle_s
        self._table: LruTable[str, dict[str, float]] = LruTable(max_entries)
        self._clock = clock

    def use(self, key: str, agent: str, limit: int) -> int:
        """Record that ``key`` acts as ``agent``: 0 when it may, else how many other names it already uses."""
        now = self._clock()
        names = self._table.get(key)
        if names is None:
            names = {}
            self._table.put(key, names)
        if agent in names:
            names[agent] = now
            return 0
        for name, seen in list(names.items()):
            if now - seen > self.idle_s:
                del names[name]
        if len(names) >= limit:
            return len(names)
        names[agent] = now
        return 0


def json_too_deep(raw: bytes | str, max_depth: int) -> bool:
    """Whether a JSON text nests deeper than ``max_depth``, found by one scan before any parsing.

    Brackets inside strings do not count; the scan stops at the first level past the limit, so a hostile
    document costs no more than its size.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def value_too_deep(value: object, max_depth: int) -> bool:
    """Whether an already parsed JSON value nests deeper than ``max_depth`` (iterative, stops early)."""
    return json_depth(value, max_depth) > max_depth
