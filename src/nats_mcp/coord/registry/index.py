"""The discover index boundary: visible, filtered, ordered registry entries per page without a scan of every agent.

Entries are ranked by (registeredAt, guid, namespace); every attribute value (namespace, scope, owner,
type, capability, hostname, projectId, stored status) keeps a bitset of ranks (a Python int). A query
is a handful of big-int ANDs/ORs, ``total`` is a popcount, and a page reads the next ``limit`` set bits
after the cursor's rank — so the cost barely grows with the number of agents (Warp did a KV get per
agent per call). Staleness depends on the clock, so the stale set is kept incrementally from a list
sorted by heartbeat. The rules are those of :mod:`nats_mcp.coord.registry.visibility`; the unit tests check both
agree.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass

from nats_mcp.coord.context import Caller
from nats_mcp.coord.models import AgentRecord, Scope, Status
from nats_mcp.coord.registry.visibility import parse_time, stale_cutoff

AgentId = tuple[str, str]
"""(namespace, guid)."""
SortKey = tuple[str, str, str]
"""(registeredAt, guid, namespace): the stable discover order."""
Term = tuple[str, str]


@dataclass(frozen=True)
class Filters:
    """The discover filters (``None`` = any). ``status`` compares the effective status."""

    agent_type: str | None = None
    capability: str | None = None
    hostname: str | None = None
    project_id: str | None = None
    status: Status | None = None
    scope: Scope | None = None
    include_offline: bool = False


@dataclass(frozen=True)
class IndexPage:
    records: list[AgentRecord]
    total: int
    has_more: bool


def sort_key(record: AgentRecord) -> SortKey:
    return (record.registeredAt, record.guid, record.namespace)


def _terms(record: AgentRecord) -> list[Term]:
    terms: list[Term] = [
        ("ns", record.namespace),
        ("scope", record.scope),
        ("owner", record.owner),
        ("type", record.agentType),
        ("status", record.status),
    ]
    terms += [("cap", c) for c in record.capabilities]
    if record.hostname is not None:
        terms.append(("host", record.hostname))
    if record.projectId is not None:
        terms.append(("project", record.projectId))
    return terms


class AgentIndex:
    """Registry entries of the own namespace and the directory, indexed for discover."""

    def __init__(self) -> None:
        self._records: dict[AgentId, AgentRecord] = {}
        self._heartbeats: dict[AgentId, float] = {}
        self._namespaces: dict[str, set[str]] = {}
        """guid -> the namespaces holding an entry for it (an explicit agent id may be used in several)."""
        self._dirty = True
        self._order: list[SortKey] = []
        self._ids: list[AgentId] = []
        self._rank: dict[AgentId, int] = {}
        self._bits: dict[Term, int] = {}
        self._by_heartbeat: list[tuple[float, int]] = []
        self._stale_cutoff = -math.inf
        self._stale = 0
        """Invariant (when not dirty): the ranks whose heartbeat is before ``_stale_cutoff``."""

    def __len__(self) -> int:
        return len(self._records)

    def get(self, namespace: str, guid: str) -> AgentRecord | None:
        return self._records.get((namespace, guid))

    def by_guid(self, guid: str) -> list[AgentRecord]:
        return [self._records[(namespace, guid)] for namespace in sorted(self._namespaces.get(guid, ()))]

    def records(self) -> Iterator[AgentRecord]:
        return iter(list(self._records.values()))

    # -- changes ---------------------------------------------------------------------------------

    def upsert(self, record: AgentRecord) -> None:
        agent = (record.namespace, record.guid)
        old = self._records.get(agent)
        old_heartbeat = self._heartbeats.get(agent, 0.0)
        heartbeat = parse_time(record.lastHeartbeat)
        self._records[agent] = record
        self._heartbeats[agent] = heartbeat
        self._namespaces.setdefault(record.guid, set()).add(record.namespace)
        if self._dirty:
            return
        if old is None or sort_key(old) != sort_key(record):
            self._dirty = True  # a new rank order: rebuilt lazily on the next query
            return
        self._replace(self._rank[agent], old, record, old_heartbeat, heartbeat)

    def remove(self, namespace: str, guid: str) -> None:
        agent = (namespace, guid)
        if self._records.pop(agent, None) is not None:
            self._heartbeats.pop(agent, None)
            namespaces = self._namespaces.get(guid, set())
            namespaces.discard(namespace)
            if not namespaces:
                self._namespaces.pop(guid, None)
            self._dirty = True

    def _replace(self, rank: int, old: AgentRecord, new: AgentRecord, old_heartbeat: float, heartbeat: float) -> None:
        bit = 1 << rank
        for term in _terms(old):
            remaining = self._bits.get(term, 0) & ~bit
            if remaining:
                self._bits[term] = remaining
            else:
                self._bits.pop(term, None)
        for term in _terms(new):
            self._bits[term] = self._bits.get(term, 0) | bit
        position = bisect.bisect_left(self._by_heartbeat, (old_heartbeat, rank))
        if position < len(self._by_heartbeat) and self._by_heartbeat[position] == (old_heartbeat, rank):
            del self._by_heartbeat[position]
        bisect.insort(self._by_heartbeat, (heartbeat, rank))
        if heartbeat < self._stale_cutoff:
            self._stale |= bit
        else:
            self._stale &= ~bit

    def _rebuild(self) -> None:
        ranked = sorted(self._records.items(), key=lambda item: sort_key(item[1]))
        self._ids = [agent for agent, _ in ranked]
        self._order = [sort_key(record) for _, record in ranked]
        self._rank = {agent: rank for rank, agent in enumerate(self._ids)}
        # Bytearrays first: OR-ing growing ints one bit at a time would be quadratic.
        size = (len(ranked) + 7) // 8
        arrays: dict[Term, bytearray] = {}
        for rank, (_, record) in enumerate(ranked):
            for term in _terms(record):
                array = arrays.get(term)
                if array is None:
                    array = arrays[term] = bytearray(size)
                array[rank >> 3] |= 1 << (rank & 7)
        self._bits = {term: int.from_bytes(array, "little") for term, array in arrays.items()}
        self._by_heartbeat = sorted((self._heartbeats[agent], rank) for agent, rank in self._rank.items())
        self._stale_cutoff, self._stale = -math.inf, 0
        self._dirty = False

    # -- queries ---------------------------------------------------------------------------------

    def _stale_before(self, cutoff: float) -> int:
        """Ranks whose heartbeat is before ``cutoff``, extended from the previous answer."""
        if cutoff < self._stale_cutoff:  # the clock went back: start over
            self._stale_cutoff, self._stale = -math.inf, 0
        low = bisect.bisect_left(self._by_heartbeat, (self._stale_cutoff, -1))
        high = bisect.bisect_left(self._by_heartbeat, (cutoff, -1))
        for _, rank in self._by_heartbeat[low:high]:
            self._stale |= 1 << rank
        self._stale_cutoff = cutoff
        return self._stale

    def _visible(self, viewer: Caller) -> tuple[int, int, int, int]:
        """(visible, own namespace, public, self) bitsets for ``viewer``."""
        bits = self._bits.get
        own_namespace = bits(("ns", viewer.namespace), 0)
        public = bits(("scope", "public"), 0)
        rank = self._rank.get((viewer.namespace, viewer.guid))
        itself = 0 if rank is None else 1 << rank
        visible = (own_namespace & bits(("scope", "team"), 0)) | public | itself
        if viewer.owner:  # an empty owner never matches (see visibility.can_see)
            visible |= bits(("scope", "personal"), 0) & bits(("owner", viewer.owner), 0)
        return visible, own_namespace, public, itself

    def matching(self, viewer: Caller, filters: Filters, now: float, stale_after_s: float) -> int:
        """The bitset of entries ``viewer`` may see that pass ``filters`` (by rank)."""
        if self._dirty:
            self._rebuild()
        bits = self._bits.get
        mask, own_namespace, public, itself = self._visible(viewer)
        if filters.agent_type is not None:
            mask &= bits(("type", filters.agent_type), 0)
        if filters.capability is not None:
            mask &= bits(("cap", filters.capability), 0)
        if filters.scope is not None:
            mask &= bits(("scope", filters.scope), 0)
        # Filter only on values the viewer is shown, or the filter would reveal a redacted field.
        if filters.hostname is not None:
            mask &= bits(("host", filters.hostname), 0) & (public | own_namespace | itself)
        if filters.project_id is not None:
            mask &= bits(("project", filters.project_id), 0) & (own_namespace | itself)
        offline = bits(("status", "offline"), 0) | self._stale_before(stale_cutoff(now, stale_after_s))
        if filters.status == "offline":
            return mask & offline
        if filters.status is not None:
            mask &= bits(("status", filters.status), 0)
        if filters.status is not None or not filters.include_offline:
            mask &= ~offline
        return mask

    def page(
        self,
        viewer: Caller,
        filters: Filters,
        *,
        now: float,
        stale_after_s: float,
        after: SortKey | None,
        limit: int,
    ) -> IndexPage:
        """Up to ``limit`` matching entries after ``after`` in sort order, how many match, whether more follow."""
        mask = self.matching(viewer, filters, now, stale_after_s)
        start = bisect.bisect_right(self._order, after) if after is not None else 0
        rest = (mask >> start) << start
        records: list[AgentRecord] = []
        while rest and len(records) < limit:
            lowest = rest & -rest
            records.append(self._records[self._ids[lowest.bit_length() - 1]])
            rest ^= lowest
        return IndexPage(records, mask.bit_count(), rest != 0)
