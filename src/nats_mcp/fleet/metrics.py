"""The fleet metrics boundary: starts, stops, failures and decision latency of one coordinator process (Prometheus).

Its own registry (as observe/metrics.py does for a server), served on ``--metrics-port`` by observe's listener.
Labels are the target names of the file (bounded) and short action and outcome codes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from nats_mcp.observe.metrics import LATENCY_BUCKETS, series_names


class FleetMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.starts = Counter("nats_mcp_fleet_starts", "Agent instances started, by target.", ["target"], registry=r)
        self.stops = Counter("nats_mcp_fleet_stops", "Agent instances stopped, by target.", ["target"], registry=r)
        self.failures = Counter(
            "nats_mcp_fleet_failures",
            "Instances that crashed or could not start, by target.",
            ["target"],
            registry=r,
        )
        self.decisions = Counter(
            "nats_mcp_fleet_decisions", "Decisions, by target and action.", ["target", "action"], registry=r
        )
        self.decision_latency = Histogram(
            "nats_mcp_fleet_decision_duration_seconds",
            "One decision round of the active coordinator: snapshot read, decided, applied.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.live = Gauge(
            "nats_mcp_fleet_instances", "Instances running or starting, by target.", ["target"], registry=r
        )
        self.leader = Gauge("nats_mcp_fleet_leader", "1 while this process is the active coordinator.", registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def names(self) -> set[str]:
        """Every series name it can expose (what deploy/grafana's fleet row may name)."""
        return series_names(self.registry)
