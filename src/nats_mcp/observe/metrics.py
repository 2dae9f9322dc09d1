"""The metrics boundary: Prometheus counters, histograms and gauges, fed by the guard's audit feed and the bus's events.

:class:`Metrics` is an :class:`~nats_mcp.security.guard.AuditRecorder` (plugged into the guard through
:class:`~nats_mcp.security.observers.Fanout`), so every tool call, refusal, authentication failure and
anomaly is counted from the very records the audit log gets: one feed, no second bookkeeping path.
Labels are bounded: tool names come from the registered table (anything else is ``other``), outcomes
and reasons are the server's own short codes, and no principal, token or address is ever a label.
Each process has its own registry (tests and several servers in one process never mix).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from nats_mcp.security.audit.event import AuditEvent

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OTHER = "other"
REFUSALS = ("denied", "rate_limited", "locked_out", "limit_exceeded")
_LABEL_MAX = 48  # outcome and reason codes are short; anything longer is cut, never used as-is
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _code(value: str | None) -> str:
    return (value or "none")[:_LABEL_MAX]


class Metrics:
    """Every metric of one server process, in its own registry."""

    def __init__(self, tools: Iterable[str] = (), registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.tools = frozenset(tools)
        r = self.registry
        self.tool_calls = Counter(
            "nats_mcp_tool_calls",
            "Tool calls, by tool, transport and outcome (ok or the error code).",
            ["tool", "transport", "outcome"],
            registry=r,
        )
        self.tool_latency = Histogram(
            "nats_mcp_tool_call_duration_seconds",
            "Tool call latency inside the guard.",
            ["tool", "transport"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            "nats_mcp_auth_failures",
            "Authentication failures, by credential kind and reason.",
            ["method", "reason", "transport"],
            registry=r,
        )
        self.refusals = Counter(
            "nats_mcp_refusals",
            "Calls and connections refused by the guard: denied, rate_limited, locked_out, limit_exceeded.",
            ["kind", "reason", "transport"],
            registry=r,
        )
        self.anomalies = Counter(
            "nats_mcp_anomalies", "Security events raised by anomaly detection, by kind.", ["kind"], registry=r
        )
        self.agents = Gauge("nats_mcp_agents", "Registered agents of the namespace, by status.", ["status"], registry=r)
        self.work_pending = Gauge(
            "nats_mcp_work_pending", "Work items waiting to be claimed, by capability.", ["capability"], registry=r
        )
        self.work_in_flight = Gauge(
            "nats_mcp_work_in_flight", "Work items claimed and not settled, by capability.", ["capability"], registry=r
        )
        self.work_dead = Gauge(
            "nats_mcp_work_dead_lettered",
            "Work items in the dead-letter queue, by capability.",
            ["capability"],
            registry=r,
        )
        self.nats_connected = Gauge("nats_mcp_nats_connected", "1 while the NATS connection is up.", registry=r)
        self.nats_reconnects = Counter("nats_mcp_nats_reconnects", "NATS reconnections since start.", registry=r)
        self.sample_errors = Counter(
            "nats_mcp_sampler_errors", "Gauge samples that failed (NATS away, ...).", registry=r
        )
        self.sample_age = Gauge(
            "nats_mcp_sampler_last_success_timestamp_seconds",
            "When the agent and work gauges were last read successfully (unix time).",
            registry=r,
        )
        # Label children cached: .labels() validates and locks on every call; the hot path skips that.
        self._calls: dict[tuple[str, str, str], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}

    # -- the audit feed (AuditRecorder) ----------------------------------------------------------

    def record(self, event: AuditEvent) -> None:
        kind, tool, outcome, latency_ms = event.kind, event.tool, event.outcome, event.latency_ms
        reason, method = event.reason, event.method
        via = event.transport or "none"
        if kind == "tool_call":
            name = tool if tool in self.tools else OTHER
            key = (name, via, outcome)
            child = self._calls.get(key)
            if child is None:
                child = self._calls[key] = self.tool_calls.labels(name, via, _code(outcome))
            child.inc()
            if latency_ms is not None:
                lkey = (name, via)
                hist = self._latency.get(lkey)
                if hist is None:
                    hist = self._latency[lkey] = self.tool_latency.labels(name, via)
                hist.observe(latency_ms / 1000)
        elif kind == "auth_failure":
            self.auth_failures.labels(_code(method), _code(reason), via).inc()
        elif kind in REFUSALS:
            self.refusals.labels(kind, _code(reason), via).inc()
            if kind == "locked_out":  # a locked-out attempt is also a failed authentication
                self.auth_failures.labels(_code(method), "locked_out", via).inc()
        elif kind == "anomaly":
            self.anomalies.labels(_code((reason or "").split(":", 1)[0])).inc()

    # -- the bus's connection events (NatsConnection.add_listener) -------------------------------

    def on_nats_event(self, event: str, _data: Mapping[str, Any]) -> None:
        if event in ("connected", "reconnected"):
            self.nats_connected.set(1)
            if event == "reconnected":
                self.nats_reconnects.inc()
        elif event in ("disconnected", "closed", "connect_failed"):
            self.nats_connected.set(0)

    # -- sampled gauges (observe/sampler.py) -----------------------------------------------------

    def set_agents(self, counts: Mapping[str, int]) -> None:
        for status in ("online", "busy", "offline"):
            self.agents.labels(status).set(counts.get(status, 0))

    def set_work(self, rows: Iterable[tuple[str, int, int, int]], max_capabilities: int) -> None:
        """Replace the work gauges with ``(capability, pending, in_flight, dead)`` rows; past the bound, the rest
        are summed under ``_other``. Runs on the event loop, like the scrape: never seen half-done."""
        ordered = sorted(rows, key=lambda row: -(row[1] + row[2] + row[3]))
        kept, rest = ordered[:max_capabilities], ordered[max_capabilities:]
        if rest:
            kept.append(("_other", sum(r[1] for r in rest), sum(r[2] for r in rest), sum(r[3] for r in rest)))
        gauges: tuple[MetricWrapperBase, ...] = (self.work_pending, self.work_in_flight, self.work_dead)
        for gauge in gauges:
            gauge.clear()
        for cap, pending, in_flight, dead in kept:
            self.work_pending.labels(cap).set(pending)
            self.work_in_flight.labels(cap).set(in_flight)
            self.work_dead.labels(cap).set(dead)

    # -- exposition ------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    def names(self) -> set[str]:
        """Every series name the registry can expose: what a dashboard query may name (:func:`series_names`)."""
        return series_names(self.registry)


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
}


def series_names(registry: CollectorRegistry) -> set[str]:
    """Every series name ``registry`` can expose (``_total``, ``_bucket``, ... included), labelled children or not
    yet (the fleet coordinator's registry too)."""
    return {family.name + suffix for family in registry.collect() for suffix in _SUFFIXES.get(family.type, ("",))}
