"""The dashboard settings boundary: the ``dashboard`` section (the admin web page, its sessions and what it shows)."""

from __future__ import annotations

from pydantic import Field

from nats_mcp.config.section import Section


class DashboardSettings(Section):
    """The live dashboard at ``/dashboard`` (on ``serve --transport http``, or ``nats-mcp dashboard``) and ``top``."""

    enabled: bool = True
    """Mount ``/dashboard`` on the authenticated HTTP transport (never in ``--insecure-dev``); admins only."""
    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    """``nats-mcp dashboard``: address to bind (loopback by default)."""
    port: int = Field(default=8767, ge=0, le=65535)
    refresh_s: float = Field(default=2.0, ge=0.5, le=60)
    """How often the page polls (and how long one snapshot is shared between viewers)."""
    session_idle_s: float = Field(default=1800.0, ge=30, le=86_400)
    session_max_s: float = Field(default=8 * 3600.0, ge=60, le=7 * 86_400)
    max_sessions: int = Field(default=1000, ge=1, le=100_000)
    trend_points: int = Field(default=60, ge=2, le=1000)
    """Samples kept per work queue for the trend chart (one per refresh while someone watches)."""
    messages_per_channel: int = Field(default=5, ge=0, le=50)
    items_per_queue: int = Field(default=5, ge=0, le=50)
    agents_max: int = Field(default=200, ge=1, le=10_000)
    security_events: int = Field(default=30, ge=1, le=500)
    traffic_window: int = Field(default=2000, ge=10, le=100_000)
    """Tool calls (newest audit records) the principal -> tool traffic graph counts."""
