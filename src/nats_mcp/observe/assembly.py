"""The observability assembly boundary: metrics, anomaly detection, tracing and the metrics listener of one server
process, built from the settings and plugged into the guard's audit feed where the server is assembled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from nats_mcp.config.settings import Settings
from nats_mcp.observe import tracing
from nats_mcp.observe.anomaly import AnomalyDetector
from nats_mcp.observe.exposition import MetricsListener, http_route
from nats_mcp.observe.metrics import Metrics
from nats_mcp.observe.sampler import Sampler, coordinator_sampler
from nats_mcp.security.audit.event import AuditRecorder, NoAudit
from nats_mcp.security.observers import Fanout

if TYPE_CHECKING:
    from nats_mcp.coord.service import Coordinator

log = logging.getLogger("nats_mcp.observe")


class Observability:
    """What one server process observes. ``recorder`` is what the guard records to: the audit log first, then
    metrics and anomaly detection (whose ``anomaly`` records go back through it, so they are audited and counted)."""

    def __init__(self, settings: Settings, audit: AuditRecorder | None, tools: Iterable[str]) -> None:
        cfg = settings.observe
        self.settings = settings
        self.recorder = Fanout(audit or NoAudit())
        self.metrics: Metrics | None = Metrics(tools) if cfg.metrics.enabled else None
        if self.metrics is not None:
            self.recorder.add(self.metrics)
        self.anomaly: AnomalyDetector | None = None
        if cfg.anomaly.enabled:
            self.anomaly = AnomalyDetector(cfg.anomaly, self.recorder)
            self.recorder.add(self.anomaly)
        tracing.setup_tracing(cfg.tracing)  # raises TracingError (e.g. OTLP asked for, not installed)
        self.sampler: Sampler | None = None
        self.listener: MetricsListener | None = None
        self.metrics_port: int | None = None

    def on_nats_event(self, event: str, data: Mapping[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.on_nats_event(event, data)

    def routes(self) -> list[Route]:
        """``/metrics`` for the HTTP transport (none with metrics off)."""
        if self.metrics is None:
            return []
        return [http_route(self.metrics, self.settings.observe.metrics.allow_from)]

    async def start(self, coordinator: Coordinator) -> None:
        """Start sampling the gauges and, with ``observe.metrics.port`` set, the metrics listener (OSError if it
        cannot listen)."""
        m = self.settings.observe.metrics
        if self.metrics is None:
            return
        self.sampler = coordinator_sampler(self.metrics, coordinator, m.sample_interval_s, m.max_capabilities)
        self.sampler.start()
        if m.port is not None:
            self.listener = MetricsListener(self.metrics, m.host, m.port, m.allow_from)
            self.metrics_port = await self.listener.start(m.port_file)

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        if self.sampler is not None:
            await self.sampler.close()
        if tracing.enabled():
            tracing.shutdown_tracing()
