"""The NATS operations settings boundary: the ``nats_ops`` section (the ``nats_*`` tool group, off by default)."""

from __future__ import annotations

from pydantic import Field

from nats_mcp.config.section import Section


class NatsOpsSettings(Section):
    """The ``nats_*`` operations tools. Off unless enabled here *and* granted by a policy role's ``nats`` block."""

    enabled: bool = False
    """Register the ``nats_*`` tools (``NATS_MCP_NATS_OPS_ENABLED=true``)."""
    monitor_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://[^\s]+$")
    """nats-server's HTTP monitoring endpoint (e.g. ``http://127.0.0.1:8222``): ``nats_server_info`` adds
    varz/jsz figures from it. Without it, the connection's INFO and the account's JetStream usage."""
    max_page: int = Field(default=100, ge=1, le=1000)
    """Most items a list tool returns per call (``limit`` above it is refused)."""
    max_scan: int = Field(default=10_000, ge=100, le=1_000_000)
    """Most stream, consumer or key names one call reads to build a page (beyond: the page says so)."""
    preview_bytes: int = Field(default=4096, ge=64, le=1024 * 1024)
    """Most payload bytes one result shows; the rest is fetched with ``offset``."""
    max_publish_bytes: int = Field(default=64 * 1024, ge=1, le=8 * 1024 * 1024)
    """Largest payload (or KV value) ``nats_publish``, ``nats_request`` and ``nats_kv_put`` accept."""
    max_request_timeout_ms: int = Field(default=10_000, ge=100, le=60_000)
    """Longest ``nats_request`` wait a caller may ask for."""
