"""The composition root boundary: one process's NATS connection, audit log, observability, guard and coordinator.

Every entry point (``serve`` on each transport, the human CLI, the dashboard) builds a :class:`Runtime` and adds only
what is its own — a transport, a web app — inside ``async with runtime``::

    runtime = Runtime(settings, policy, transport="http")    # builds; nothing runs yet (TracingError)
    async with runtime:                                      # NATS starts connecting in the background
        await runtime.start_observing()                      # gauges, the metrics listener (OSError)
        ...                                                  # the transport, using runtime.guard, .coordinator
    # closed: observability, coordinator, audit log (drained), connection — also on errors and cancellation

One order for every entry point. Built: connection → audit log (over the connection) → observability (over the
audit log) → guard (recording to observability's fan-out, or straight to the audit log without observability) →
coordinator; the coordinator and observability listen to the connection's events. Closed in the reverse order of
what runs: observability first (it samples the coordinator), then the coordinator (it marks the local agent offline
over NATS), the audit log (its last records go to NATS), the connection last.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats_mcp.bus.connection import NatsConnection
    from nats_mcp.config.settings import Settings
    from nats_mcp.coord.service import Coordinator
    from nats_mcp.observe.assembly import Observability
    from nats_mcp.security.audit.log import AuditLog
    from nats_mcp.security.audit.record import Transport
    from nats_mcp.security.guard import Guard
    from nats_mcp.security.policy import Policy

AUDIT_DRAIN_S = 10.0
"""At shutdown, how long queued audit records may take to reach their sinks."""


class Runtime:
    """The shared parts of one server process. ``transport`` labels its audit records; ``local_agent``: the
    coordinator acts for this process's own agent (stdio) rather than for gateway principals; ``observe``: metrics,
    anomaly detection and tracing (off for the human CLI and the dashboard); ``coordinate``: a coordinator at all
    (off for the dashboard, which reads NATS itself); ``connect``: start connecting on entry (off when a transport
    must bind first: then :meth:`start`); ``offline_drain_s``: how long the audit log may drain at shutdown when
    NATS is unreachable (None: as long as when connected)."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        *,
        transport: Transport,
        local_agent: bool = False,
        observe: bool = True,
        coordinate: bool = True,
        connect: bool = True,
        offline_drain_s: float | None = None,
    ) -> None:
        from nats_mcp.bus.connection import NatsConnection
        from nats_mcp.coord.service import Coordinator
        from nats_mcp.security.audit.log import AuditLog
        from nats_mcp.security.guard import Guard

        self.settings = settings
        self._connect = connect
        self._offline_drain_s = offline_drain_s
        self.conn: NatsConnection = NatsConnection(settings)
        self.audit: AuditLog = AuditLog.from_settings(settings.security.audit, self.conn, transport=transport)
        self.obs: Observability | None = _observability(settings, self.audit) if observe else None
        self.guard: Guard = Guard(
            settings.security,
            policy,
            self.obs.recorder if self.obs else self.audit,
            settle=self.audit.settle if self.audit.durability == "sync" and self.audit.enabled else None,
        )
        self._coordinator: Coordinator | None = None
        if coordinate:
            self._coordinator = Coordinator(self.conn, settings, local_agent=local_agent)
            self.conn.add_listener(self._coordinator.on_nats_event)
        if self.obs is not None:
            self.conn.add_listener(self.obs.on_nats_event)

    @property
    def coordinator(self) -> Coordinator:
        """The coordinator (a runtime built with ``coordinate=False`` has none: a programming error to ask)."""
        if self._coordinator is None:
            raise RuntimeError("this runtime was built without a coordinator")
        return self._coordinator

    def start(self) -> None:
        """Start connecting to NATS in the background (returns at once; idempotent)."""
        self.conn.start()

    async def start_observing(self) -> None:
        """Start sampling the gauges and the metrics listener, if observing (OSError if it cannot listen)."""
        if self.obs is not None and self._coordinator is not None:
            await self.obs.start(self._coordinator)

    async def aclose(self) -> None:
        """Close in the reverse order of what runs: observability, coordinator, audit log, connection. A part that
        fails to close does not keep the later ones open: each still closes, then the first failure is raised."""
        async with contextlib.AsyncExitStack() as stack:  # unwinds last-in first-out, past failures
            stack.push_async_callback(self.conn.close)
            stack.push_async_callback(self._close_audit)
            if self._coordinator is not None:
                stack.push_async_callback(self._coordinator.close)
            if self.obs is not None:
                stack.push_async_callback(self.obs.close)

    async def _close_audit(self) -> None:
        drain = AUDIT_DRAIN_S
        if self._offline_drain_s is not None and not self.conn.connected:
            # Waiting cannot bring NATS back, and a stuck shutdown would be killed anyway: what is queued is lost,
            # and the audit log says so.
            drain = self._offline_drain_s
        await self.audit.close(timeout=drain)

    async def __aenter__(self) -> Runtime:
        if self._connect:
            self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _observability(settings: Settings, audit: AuditLog) -> Observability:
    """Metrics, anomaly detection and tracing as the ``observe`` settings say, over the audit log (TracingError)."""
    from nats_mcp.api.tools.coordination import TOOLS
    from nats_mcp.observe.assembly import Observability

    return Observability(settings, audit, [spec.suffix for spec in TOOLS])
