"""The agent registry boundary: registration, presence, discovery and GC of the agents of one namespace.

Who may see what is decided by :mod:`nats_mcp.coord.registry.visibility`; storage (KV with compare-and-set,
the cross-namespace directory copies, the watched local copies and the index reads are served from)
by :mod:`nats_mcp.coord.registry.store`. Discover costs no KV get per agent: it is a query of the index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from nats_mcp.bus import specs
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import JetStreamError, KeyNotFound, NatsUnavailableError, nats_edge
from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.kvlock import KvLock
from nats_mcp.bus.layout import Layout
from nats_mcp.config.settings import Settings
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import (
    Forbidden,
    InvalidArgument,
    InvalidCursor,
    LimitExceeded,
    NotFound,
    NotRegistered,
)
from nats_mcp.coord.models import AgentEntry, AgentRecord, Scope, Status
from nats_mcp.coord.pagination import make_cursor, read_cursor
from nats_mcp.coord.registry.identity import Lease, checked
from nats_mcp.coord.registry.index import Filters, SortKey
from nats_mcp.coord.registry.store import RegistryStore
from nats_mcp.coord.registry.visibility import (
    SCOPES,
    STATUSES,
    can_see,
    effective_status,
    entry_for,
    format_time,
    is_stale,
    parse_time,
)
from nats_mcp.core.aiotasks import cancel_requested, stop_task
from nats_mcp.core.names import validate_guid, validate_name, validate_project_id, validate_type_name

log = logging.getLogger("nats_mcp.coord.registry.service")

DISCOVER_TOOL = "warp_registry_discover"
MAX_DISCOVER_LIMIT = 100
_MAX_HOSTNAME = 255


@dataclass(frozen=True)
class DiscoverPage:
    agents: list[AgentEntry]
    next_cursor: str | None
    has_more: bool
    total: int


class RegistryService:
    """The registry of one namespace, as seen from it (its own entries plus other namespaces' shared ones)."""

    def __init__(self, conn: NatsConnection, settings: Settings, layout: Layout) -> None:
        self.namespace = layout.namespace
        self._conn = conn
        self._settings = settings
        self._stale_after_s = settings.presence.stale_after_s
        self._store = RegistryStore(conn, layout)
        self._index = self._store.index
        self._identity = Bucket.declared(conn, specs.identity_bucket(layout))
        self._gc_lock = KvLock(self._identity, "gc", ttl_s=2 * settings.presence.gc_interval_s)
        self._gc_task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Watch both buckets (created if missing) and start the GC loop; waits for the first copy if NATS is up.

        Safe to call again (e.g. on every reconnect): the watches resync by themselves.
        """
        self._store.start()
        if self._gc_task is None:
            self._gc_task = asyncio.get_running_loop().create_task(self._gc_loop(), name="registry-gc")
        if self._conn.connected:
            await self._store.wait_loaded(self._settings.nats.connect_timeout_s)

    async def close(self) -> None:
        task, self._gc_task = self._gc_task, None
        await stop_task(task)
        await self._store.close()
        with contextlib.suppress(Exception):  # best effort: otherwise the lock expires by itself
            await self._gc_lock.release()

    async def _ready(self) -> None:
        await self._store.ready(self._settings.nats.connect_timeout_s)

    def _own_caller(self, caller: Caller) -> None:
        if caller.namespace != self.namespace:
            raise Forbidden(f"this registry serves namespace {self.namespace!r}, not {caller.namespace!r}")

    # -- registration and presence ---------------------------------------------------------------

    def _capabilities(self, values: list[str]) -> list[str]:
        if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
            raise InvalidArgument("capabilities must be a list of names")
        unique = list(dict.fromkeys(values))
        limit = self._settings.limits.capabilities_max
        if len(unique) > limit:
            raise LimitExceeded(f"{len(unique)} capabilities given; at most {limit} are allowed")
        return [checked(validate_type_name, c, "capability") for c in unique]

    @staticmethod
    def _scope(scope: object) -> Scope:
        for known in SCOPES:
            if scope == known:
                return known
        raise InvalidArgument(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")

    async def register(
        self, caller: Caller, *, handle: str, agent_type: str, capabilities: list[str], scope: Scope
    ) -> AgentEntry:
        """Create or replace the caller's entry (online, heartbeat now); the first registeredAt is kept."""
        self._own_caller(caller)
        handle = checked(validate_name, handle, "handle")
        agent_type = checked(validate_type_name, agent_type, "agentType")
        caps, valid_scope = self._capabilities(capabilities), self._scope(scope)
        now = format_time(time.time())

        def change(old: AgentRecord | None) -> AgentRecord:
            return AgentRecord(
                guid=caller.guid,
                namespace=caller.namespace,
                handle=handle,
                agentType=agent_type,
                capabilities=caps,
                scope=valid_scope,
                status="online",
                currentTaskCount=0,
                lastHeartbeat=now,
                registeredAt=old.registeredAt if old is not None else now,
                hostname=caller.hostname,
                projectId=caller.project_id,
                owner=caller.owner,
            )

        _, record = await self._store.mutate(caller.guid, change)
        assert record is not None
        return self._entry(caller, record)

    async def update_presence(
        self,
        caller: Caller,
        *,
        status: Status | None = None,
        current_task_count: int | None = None,
        capabilities: list[str] | None = None,
    ) -> tuple[AgentEntry, list[str]]:
        """Change the given fields (and refresh the heartbeat); returns the entry and the names of changed fields."""
        self._own_caller(caller)
        if status is None and current_task_count is None and capabilities is None:
            raise InvalidArgument("give at least one of status, currentTaskCount or capabilities")
        if status is not None and status not in STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        count = current_task_count
        if count is not None and (type(count) is not int or count < 0):
            raise InvalidArgument(f"currentTaskCount must be a whole number >= 0, not {count!r}")
        updates: dict[str, Any] = {"status": status, "currentTaskCount": count}
        if capabilities is not None:
            updates["capabilities"] = self._capabilities(capabilities)
        updates = {k: v for k, v in updates.items() if v is not None}
        now = time.time()

        def change(old: AgentRecord | None) -> AgentRecord:
            if old is None:
                raise NotRegistered("this agent is not registered: call warp_registry_register first")
            return old.model_copy(update={**updates, "lastHeartbeat": format_time(now)})

        old, new = await self._store.mutate(caller.guid, change)
        assert old is not None and new is not None
        seen = {"status": effective_status(old, now, self._stale_after_s)}
        changed = [k for k, v in updates.items() if seen.get(k, getattr(old, k)) != v]
        return self._entry(caller, new), changed

    async def deregister(self, caller: Caller) -> None:
        """Mark the caller offline; the entry (and its inbox) stay until GC."""
        self._own_caller(caller)

        def change(old: AgentRecord | None) -> AgentRecord:
            if old is None:
                raise NotRegistered("this agent is not registered, so it cannot deregister")
            return old.model_copy(update={"status": "offline", "lastHeartbeat": format_time(time.time())})

        await self._store.mutate(caller.guid, change)

    async def mark_offline(self, caller: Caller) -> None:
        """Shutdown path: like deregister, but silent and idempotent."""
        self._own_caller(caller)

        def change(old: AgentRecord | None) -> AgentRecord | None:
            if old is None or old.status == "offline":
                return None
            return old.model_copy(update={"status": "offline", "lastHeartbeat": format_time(time.time())})

        await self._store.mutate(caller.guid, change)

    async def heartbeat(self, caller: Caller) -> bool:
        """Refresh lastHeartbeat if registered and not offline (an agent set offline stays so); True if written."""
        self._own_caller(caller)

        def change(old: AgentRecord | None) -> AgentRecord | None:
            if old is None or old.status == "offline":
                return None
            return old.model_copy(update={"lastHeartbeat": format_time(time.time())})

        _, new = await self._store.mutate(caller.guid, change)
        return new is not None

    async def set_handle(self, caller: Caller, handle: str) -> None:
        """Carry a new handle into the entry, if the caller is registered."""
        self._own_caller(caller)
        handle = checked(validate_name, handle, "handle")

        def change(old: AgentRecord | None) -> AgentRecord | None:
            return None if old is None or old.handle == handle else old.model_copy(update={"handle": handle})

        await self._store.mutate(caller.guid, change)

    async def own_record(self, caller: Caller) -> AgentRecord | None:
        """The caller's stored entry, read from KV (authoritative, whatever other processes wrote)."""
        self._own_caller(caller)
        _, record = await self._store.read(caller.guid)
        return record

    async def admission(self, caller: Caller, capability: str | None = None) -> AgentRecord | None:
        """The caller's entry for an admission check (registered; with ``capability`` if one is named).

        This process's live copy of the bucket answers when it admits: its own writes are in it at once, other
        processes' within the watch's delay, so no round trip per call. Otherwise KV answers, so an agent registered
        (or given the capability) a moment ago on another process is never refused ("register first" must not
        answer an agent that just registered: a load balancer sends its next call anywhere); one deregistered there
        is refused once the watch brings the change (milliseconds), as a revoked API key is."""
        self._own_caller(caller)
        record = self._store.copied(caller.guid)
        if record is not None and (capability is None or capability in record.capabilities):
            return record
        _, record = await self._store.read(caller.guid)
        return record

    # -- reading ---------------------------------------------------------------------------------

    def _entry(self, caller: Caller, record: AgentRecord) -> AgentEntry:
        return entry_for(caller, record, time.time(), self._stale_after_s)

    def effective_status(self, record: AgentRecord) -> Status:
        """The status ``record`` reads as now (offline once its heartbeat is older than the stale threshold)."""
        return effective_status(record, time.time(), self._stale_after_s)

    def offline_since(self, guid: str) -> float | None:
        """When the agent ``guid`` of this namespace was last heard of, if it reads as offline now (its last
        heartbeat); None while online or when it has no entry (reservations: ``coord/reservations``)."""
        record = self._index.get(self.namespace, guid)
        if record is None or effective_status(record, time.time(), self._stale_after_s) != "offline":
            return None
        return parse_time(record.lastHeartbeat)

    def status_counts(self) -> dict[str, int]:
        """Agents of this namespace by the status they read as now, from the watched copy (no NATS round trip)."""
        now = time.time()
        counts: dict[str, int] = {}
        for record in self._index.records():
            if record.namespace == self.namespace:
                status = effective_status(record, now, self._stale_after_s)
                counts[status] = counts.get(status, 0) + 1
        return counts

    async def find_visible(self, caller: Caller, guid: str) -> AgentRecord:
        """The stored entry of ``guid`` if the caller may see it (own namespace first); NotFound otherwise."""
        self._own_caller(caller)
        guid = checked(validate_guid, guid, "agent GUID")
        await self._ready()
        candidates = self._index.by_guid(guid)
        if self._index.get(self.namespace, guid) is None:
            _, fresh = await self._store.read(guid)  # the watch may lag another process
            candidates = [fresh, *candidates] if fresh is not None else candidates
        for record in sorted(candidates, key=lambda r: r.namespace != self.namespace):
            if can_see(caller, record):
                return record
        # Missing and invisible answer alike, so existence does not leak.
        raise NotFound(f"agent {guid} not found or not visible to you")

    async def get_info(self, caller: Caller, guid: str) -> AgentEntry:
        return self._entry(caller, await self.find_visible(caller, guid))

    def _filters(
        self,
        agent_type: str | None,
        capability: str | None,
        hostname: str | None,
        project_id: str | None,
        status: Status | None,
        scope: Scope | None,
        include_offline: bool,
    ) -> Filters:
        if hostname is not None and (
            not isinstance(hostname, str) or not 0 < len(hostname) <= _MAX_HOSTNAME or not hostname.isprintable()
        ):
            raise InvalidArgument(f"hostname must be 1-{_MAX_HOSTNAME} printable characters")
        if status is not None and status not in STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        return Filters(
            agent_type=None if agent_type is None else checked(validate_type_name, agent_type, "agentType"),
            capability=None if capability is None else checked(validate_type_name, capability, "capability"),
            hostname=hostname,
            project_id=None if project_id is None else checked(validate_project_id, project_id, "projectId"),
            status=status,
            scope=None if scope is None else self._scope(scope),
            include_offline=bool(include_offline),
        )

    async def discover(
        self,
        caller: Caller,
        *,
        agent_type: str | None = None,
        capability: str | None = None,
        hostname: str | None = None,
        project_id: str | None = None,
        status: Status | None = None,
        scope: Scope | None = None,
        include_offline: bool = False,
        limit: int = 20,
        cursor: str | None = None,
    ) -> DiscoverPage:
        """Agents the caller may see that match the filters, ordered by (registeredAt, guid), one page at a time.

        ``includeOffline`` false hides agents that read offline; an explicit ``status="offline"`` asks for them.
        """
        self._own_caller(caller)
        if type(limit) is not int or not 1 <= limit <= MAX_DISCOVER_LIMIT:
            raise InvalidArgument(f"limit must be a whole number from 1 to {MAX_DISCOVER_LIMIT}")
        filters = self._filters(agent_type, capability, hostname, project_id, status, scope, include_offline)
        bound = {
            "agentType": filters.agent_type,
            "capability": filters.capability,
            "hostname": filters.hostname,
            "projectId": filters.project_id,
            "status": filters.status,
            "scope": filters.scope,
            "includeOffline": filters.include_offline,
        }
        after = None if cursor is None else _sort_key(read_cursor(cursor, DISCOVER_TOOL, caller.namespace, bound))
        await self._ready()
        now = time.time()
        page = self._index.page(caller, filters, now=now, stale_after_s=self._stale_after_s, after=after, limit=limit)
        agents = [entry_for(caller, record, now, self._stale_after_s) for record in page.records]
        next_cursor = None
        if page.has_more:
            last = page.records[-1]
            position = {"r": last.registeredAt, "g": last.guid, "n": last.namespace}
            next_cursor = make_cursor(DISCOVER_TOOL, caller.namespace, bound, position)
        return DiscoverPage(agents, next_cursor, page.has_more, page.total)

    # -- garbage collection ----------------------------------------------------------------------

    def _expired(self, record: AgentRecord, now: float) -> bool:
        """Offline (stored or stale) and silent for longer than the retention."""
        retention_s = self._settings.presence.retention_h * 3600
        heartbeat = parse_time(record.lastHeartbeat)
        offline = record.status == "offline" or is_stale(heartbeat, now, self._stale_after_s)
        return offline and now - heartbeat > retention_s

    async def collect_garbage(self) -> int:
        """Delete expired entries of this namespace (and their directory copies) and expired directory copies of
        other namespaces, if this process holds the GC lock; returns how many entries were removed."""
        if not await self._gc_lock.acquire():
            return 0
        now = time.time()
        removed = 0
        for guid, revision, record in self._store.own_items():
            if self._expired(record, now) and await self._store.remove(guid, revision):
                removed += 1
                await self._forget_identity(guid, now)
        for key, revision, record in self._store.shared_items():
            if self._expired(record, now) and await self._store.unshare(key, revision):
                removed += 1
        return removed

    async def _forget_identity(self, guid: str, now: float) -> None:
        """An expired agent's handle and lease go too, unless a live process still holds its lease."""
        kv = await self._identity.kv()
        lease_key = Layout.lease_key(guid)
        try:
            with nats_edge():
                entry = await kv.get(lease_key)
        except KeyNotFound:
            entry = None
        if entry is not None:
            lease = Lease.decode(entry.value)
            if lease is not None and now - lease.renewedAt <= self._stale_after_s:
                return  # deregistered but still running: its handle stays
            try:
                with nats_edge():
                    await kv.delete(lease_key, last=entry.revision)
            except JetStreamError:
                return  # renewed meanwhile: the agent is back
        await kv.delete(Layout.handle_key(guid))

    async def _gc_loop(self) -> None:
        interval = self._settings.presence.gc_interval_s
        await asyncio.sleep(random.uniform(0.1, 1.0) * interval)  # noqa: S311 - spreads processes, not security
        while True:
            try:
                removed = await self.collect_garbage()
                if removed:
                    log.info("registry GC removed %d expired agent entries", removed)
            except NatsUnavailableError:
                if cancel_requested():  # the close's cancel, turned into an error by the closing connection
                    raise asyncio.CancelledError from None
                # NATS away is normal; the next round retries
            except Exception:
                if cancel_requested():
                    raise asyncio.CancelledError from None
                log.exception("registry GC failed; retrying next round")
            await asyncio.sleep(interval)


def _sort_key(position: dict[str, Any]) -> SortKey:
    values = (position.get("r"), position.get("g"), position.get("n"))
    if not all(isinstance(v, str) for v in values):
        raise InvalidCursor("the cursor is malformed: pass back nextCursor exactly as a previous call returned it")
    return (str(values[0]), str(values[1]), str(values[2]))
