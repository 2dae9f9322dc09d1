"""The observability settings boundary: the ``observe`` (metrics, tracing, anomalies) and ``logging`` sections."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from nats_mcp.config.section import Section


class MetricsSettings(Section):
    """Prometheus metrics: ``/metrics`` on the HTTP transport, and on ``port`` (``--metrics-port``) for any of them."""

    enabled: bool = True
    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    """Where the separate metrics listener binds (loopback by default)."""
    port: int | None = Field(default=None, ge=0, le=65535)
    """A separate metrics listener (stdio and gRPC need one to be scraped); None: none; 0: an OS-assigned port."""
    port_file: Path | None = None
    """Write the metrics listener's port here once it listens (tests and scripts with port 0)."""
    allow_from: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    """Addresses (CIDR) that may read metrics, on either listener; others get 403. Loopback only by default."""
    sample_interval_s: float = Field(default=15.0, ge=0.05, le=3600)
    """How often the agent and work-queue gauges are read from NATS (a scrape never waits on NATS)."""
    max_capabilities: int = Field(default=200, ge=1, le=10_000)
    """Work gauges for at most this many capabilities (the rest are summed under ``_other``): bounded labels."""

    @field_validator("allow_from")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an address or CIDR network") from None
        return value


class TracingSettings(Section):
    """OpenTelemetry tracing (off by default): a span per tool call, child spans for NATS operations."""

    enabled: bool = False
    exporter: Literal["console", "otlp", "none"] = "console"
    """``otlp`` needs ``opentelemetry-exporter-otlp`` installed (endpoint from the standard ``OTEL_*`` variables)."""
    service_name: str = Field(default="nats-mcp", min_length=1, max_length=100)


class AnomalySettings(Section):
    """Per-principal baselines of request rate and authentication failures, and first-seen tools."""

    enabled: bool = True
    window_s: float = Field(default=10.0, ge=0.1, le=3600)
    """Length of one counting window; the baseline is an EWMA of per-window counts."""
    alpha: float = Field(default=0.2, gt=0, le=1)
    """EWMA weight of the newest window."""
    burst_factor: float = Field(default=4.0, ge=1)
    """A window alerts when its count exceeds this many times the baseline ..."""
    burst_min: int = Field(default=60, ge=1)
    """... and at least this many calls."""
    auth_failure_factor: float = Field(default=3.0, ge=1)
    auth_failure_min: int = Field(default=10, ge=1)
    """Authentication failures from one address in one window that alert (with the factor over its baseline)."""
    warmup_s: float = Field(default=300.0, ge=0)
    """A principal is learnt this long before a tool it has not used yet alerts."""
    new_tool: bool = True
    max_principals: int = Field(default=10_000, ge=10, le=1_000_000)


class ObserveSettings(Section):
    """Metrics, tracing and anomaly detection (logs: the ``logging`` section)."""

    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    anomaly: AnomalySettings = Field(default_factory=AnomalySettings)


class LoggingSettings(Section):
    """Log level and format (JSON lines on stderr by default)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARNING" if value == "WARN" else value
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value
