"""The dashboard's data boundary: one snapshot of a namespace (agents, channels, work queues, fleet, security, traffic).

Read-only: the registry is watched through its own :class:`RegistryStore` copy, channels and queues are read
with stream info and direct gets, never creating or changing anything. A snapshot is built at most once per
refresh interval however many pages and ``top`` sessions ask (they share it); each part that fails (NATS
away, a stream missing) is reported in ``errors`` while the rest is still shown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import DirectGetUnavailable, api_prefix, get_batch
from nats_mcp.bus.errors import ResourceNotFound
from nats_mcp.bus.layout import Layout
from nats_mcp.config.settings import Settings
from nats_mcp.coord.channels import ChannelService
from nats_mcp.coord.channels import _decode_all as decode_messages  # the channel reader's own decoding
from nats_mcp.coord.models import AgentRecord
from nats_mcp.coord.registry.store import RegistryStore
from nats_mcp.coord.registry.visibility import effective_status, format_time, parse_time
from nats_mcp.coord.reservations.service import ReservationService
from nats_mcp.coord.work.service import WorkService
from nats_mcp.core.redact import redact
from nats_mcp.dashboard.audit_feed import AgentsOf, AuditFeed, audit_source
from nats_mcp.dashboard.blocked import blocked_work
from nats_mcp.dashboard.fleet import fleet_panel

log = logging.getLogger("nats_mcp.dashboard")

MAX_TEXT = 300
"""Characters of a message body (or description) shown: bodies are untrusted agent input, kept short."""
PART_TIMEOUT_S = 5.0
_STATUS_ORDER = {"online": 0, "busy": 1, "idle": 2, "offline": 3}
IDLE_AFTER_INTERVALS = 1.5
"""An online or busy agent reads ``idle`` on the page once its last sign of life is older than this many heartbeat
intervals: a local agent heartbeats every interval while its process lives; an HTTP or gRPC agent has no process
of its own and its calls count as its heartbeat (written at most once an interval), so an agent that stopped
calling reads idle after half an interval to 1.5 intervals instead of online until it is stale (three intervals by
default). 1.5 stays below the smallest stale threshold allowed (two intervals). An HTTP agent calling only about
once an interval or less often may read idle for a moment between its calls."""


def clip(text: object, limit: int = MAX_TEXT) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


class Dashboard:
    """Builds and shares snapshots of one namespace for the web page and ``top``."""

    def __init__(self, conn: NatsConnection, settings: Settings, *, clock: Any = time.time) -> None:
        self.conn = conn
        self.settings = settings
        self.cfg = settings.dashboard
        self.layout = Layout(settings.resolved_namespace)
        self.registry = RegistryStore(conn, self.layout)
        self.channels = ChannelService(conn, settings, self.layout)
        self.work = WorkService(conn, settings, self.layout)
        self.reservations = ReservationService(conn, self.layout, self._offline_since, read_only=True)
        stream, file = audit_source(settings.security.audit, conn)
        self.audit = AuditFeed(
            stream,
            file,
            events=self.cfg.security_events,
            window=self.cfg.traffic_window,
            namespace=self.layout.namespace,
        )
        self.trends: dict[str, deque[list[float]]] = {}
        self._clock = clock
        self._lock = asyncio.Lock()
        self._snapshot: dict[str, Any] | None = None
        self._built_at = -1e18
        self._started = False
        self._api = api_prefix(settings.nats.jetstream_domain)

    async def aclose(self) -> None:
        if self._started:
            await self.registry.close()

    async def snapshot(self) -> dict[str, Any]:
        """The shared snapshot, rebuilt when older than half the refresh interval (one build at a time)."""
        async with self._lock:
            if self._snapshot is None or time.monotonic() - self._built_at >= self.cfg.refresh_s / 2:
                self._snapshot = await self.build()
                self._built_at = time.monotonic()
            return self._snapshot

    async def build(self) -> dict[str, Any]:
        errors: list[str] = []
        connected = self.conn.connected

        async def part(name: str, coro: Any, empty: Any, *, needs_nats: bool = True) -> Any:
            if needs_nats and not connected:
                coro.close()
                return empty
            try:
                return await asyncio.wait_for(coro, PART_TIMEOUT_S)
            except Exception as exc:
                log.debug("dashboard %s: %s", name, exc, exc_info=True)
                errors.append(f"{name}: {redact(getattr(exc, 'message', None) or str(exc) or type(exc).__name__)}")
                return empty

        agents, channels, queues, blocked, reservations, fleet, _ = await asyncio.gather(
            part("agents", self._agents(), {"total": 0, "shown": []}),
            part("channels", self._channels(), []),
            part("queues", self._queues(), []),
            part("blocked work", blocked_work(self.work), {"total": 0, "shown": []}),
            part("reservations", self._reservations(), []),
            part("fleet", fleet_panel(self.conn, self.layout, self._clock(), self.work.views.boundary_counts), None),
            part("audit", self.audit.refresh(), None, needs_nats=self.audit.source == "stream"),
        )
        if not connected:
            errors.append("NATS is not connected; showing nothing until it is")
        agents_of = self._handles_by_owner()
        now = self._clock()
        return {
            "generatedAt": format_time(now),
            "namespace": self.layout.namespace,
            "refreshS": self.cfg.refresh_s,
            "nats": {"connected": connected},
            "agents": agents,
            "channels": channels,
            "queues": queues,
            "blocked": blocked,
            "reservations": reservations,
            "fleet": fleet,
            "security": self.audit.security(agents_of),
            "traffic": self.audit.traffic(agents_of=agents_of),
            "errors": errors,
        }

    # -- agents ----------------------------------------------------------------------------------

    async def _agents(self) -> dict[str, Any]:
        if not self._started:
            self.registry.start()
            self._started = True
        await self.registry.ready(self.settings.nats.connect_timeout_s)
        now = self._clock()
        presence = self.settings.presence
        idle_after = presence.heartbeat_interval_s * IDLE_AFTER_INTERVALS
        rows = []
        for _, _, record in self.registry.own_items():
            status = effective_status(record, now, presence.stale_after_s)
            ago = max(now - parse_time(record.lastHeartbeat), 0.0)
            rows.append(
                {
                    "guid": record.guid,
                    "handle": record.handle,
                    "agentType": record.agentType,
                    "status": status,
                    "presence": "idle" if status != "offline" and ago > idle_after else status,
                    "via": self._via(record),
                    "capabilities": record.capabilities,
                    "scope": record.scope,
                    "lastSeen": record.lastHeartbeat,
                    "lastSeenAgoS": round(ago, 1),
                    "currentTaskCount": record.currentTaskCount,
                    "hostname": record.hostname,
                }
            )
        rows.sort(key=lambda r: (_STATUS_ORDER.get(r["presence"], 4), r["lastSeenAgoS"], r["handle"]))
        return {"total": len(rows), "shown": rows[: self.cfg.agents_max]}

    def _via(self, record: AgentRecord) -> str | None:
        """The credential an agent came through, as the audit names it (``worker [key 1a2b…]``): a gateway agent's
        registry entry keeps only its owner key (a hash), matched against the principals of the audit records
        read. A local (stdio) agent is a process on its host. None: no call of it in the audit read so far."""
        if record.hostname:
            return f"local process on {record.hostname}"
        return self.audit.via(record.owner) if record.owner else None

    def _handles_by_owner(self) -> AgentsOf:
        """Owner key -> the handles of this namespace's agents acting for it (from the watched registry copy)."""
        handles: dict[str, list[str]] = {}
        for _, _, record in self.registry.own_items():
            if record.owner:
                handles.setdefault(record.owner, []).append(record.handle)
        return lambda owner: sorted(set(handles.get(owner, ())))

    # -- channels --------------------------------------------------------------------------------

    async def _channels(self) -> list[dict[str, Any]]:
        statuses = await self.channels.status()
        recents = await asyncio.gather(*(self._recent(s.name, s.firstSequence, s.lastSequence) for s in statuses))
        return [
            {"name": s.name, "messages": s.messages, "bytes": s.bytes, "lastSequence": s.lastSequence, "recent": recent}
            for s, recent in zip(statuses, recents, strict=True)
        ]

    async def _recent(self, channel: str, first: int, last: int) -> list[dict[str, Any]]:
        n = self.cfg.messages_per_channel
        if n == 0 or last == 0:
            return []
        start = max(first, last - n + 1, 1)
        try:
            batch = await get_batch(
                self.conn.client,
                self.layout.channel_stream(channel),
                start,
                n,
                prefix=self._api,
                timeout=PART_TIMEOUT_S,
            )
        except DirectGetUnavailable:
            return []
        shown = []
        for msg in decode_messages(batch.messages[-n:]):
            shown.append(
                {
                    "sequence": msg.sequence,
                    "handle": clip(msg.handle, 64),
                    "message": clip(msg.message),
                    "timestamp": msg.timestamp,
                    "scope": msg.scope,
                }
            )
        return list(reversed(shown))

    # -- work queues -----------------------------------------------------------------------------

    async def _queues(self) -> list[dict[str, Any]]:
        now = self._clock()
        out: list[dict[str, Any]] = []
        statuses = await self.work.views.status()
        listed = await asyncio.gather(
            *(self._items(q.capability) if q.pending + q.inFlight else _nothing() for q in statuses)
        )
        for q, items in zip(statuses, listed, strict=True):
            trend = self.trends.setdefault(q.capability, deque(maxlen=self.cfg.trend_points))
            trend.append([round(now, 3), q.pending, q.inFlight, q.deadLettered])
            out.append(
                {
                    "capability": q.capability,
                    "pending": q.pending,
                    "inFlight": q.inFlight,
                    "deadLettered": q.deadLettered,
                    "oldestPendingSeconds": q.oldestPendingSeconds,
                    "trend": list(trend),
                    "items": items,
                }
            )
        # A queue that drained is no longer listed by the stream: keep its trend going down to zero, then drop it.
        for cap in set(self.trends) - {q.capability for q in statuses}:
            trend = self.trends[cap]
            if not any(any(point[1:]) for point in trend):
                del self.trends[cap]
                continue
            trend.append([round(now, 3), 0, 0, 0])
            out.append(
                {
                    "capability": cap,
                    "pending": 0,
                    "inFlight": 0,
                    "deadLettered": 0,
                    "oldestPendingSeconds": None,
                    "trend": list(trend),
                    "items": [],
                }
            )
        out.sort(key=lambda q: str(q["capability"]))
        return out

    async def _items(self, capability: str) -> list[dict[str, Any]]:
        """The first queued items of a capability in claim order, each pending or claimed (with its lease)."""
        if not self.cfg.items_per_queue:
            return []
        page = await self.work.views.list_items(capability, limit=self.cfg.items_per_queue)
        return [
            {
                "id": i.id,
                "taskId": clip(i.taskId, 80),
                "description": clip(i.description, 120),
                "priority": i.priority,
                "attempts": i.attempts,
                "state": "claimed" if i.leaseExpiresAt else "pending",
                "leaseExpiresAt": i.leaseExpiresAt,
            }
            for i in page.items
        ]

    # -- reservations (their own panel) ---------------------------------------------------------------

    def _offline_since(self, guid: str) -> float | None:
        """The registry's presence, from the dashboard's own watched copy (as ``RegistryService.offline_since``)."""
        record = self.registry.index.get(self.layout.namespace, guid)
        if record is None or effective_status(record, self._clock(), self.settings.presence.stale_after_s) != "offline":
            return None
        return parse_time(record.lastHeartbeat)

    async def _reservations(self) -> list[dict[str, Any]]:
        """Live reservations, soonest to expire first; none while the namespace has no reservation bucket yet."""
        try:
            held = await self.reservations.current()
        except ResourceNotFound:
            return []
        now = self._clock()
        return [
            {
                **r.info().model_dump(exclude={"reason"}),
                "reason": clip(r.reason),
                "expiresInS": max(0.0, round(r.expires - now, 1)),
            }
            for r in sorted(held, key=lambda r: r.expires)
        ]


async def _nothing() -> list[dict[str, Any]]:
    return []
