"""The HTTP settings boundary: the ``http`` section of the settings (bind address, TLS, public URL, host checks)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from nats_mcp.config.section import Section
from nats_mcp.config.security import RateSettings


class HttpSettings(Section):
    """Streamable HTTP transport (``serve --transport http``)."""

    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8765, ge=0, le=65535)
    """0: an OS-assigned port (printed at start and written to ``port_file`` if set)."""
    path: str = Field(default="/mcp", pattern=r"^/[A-Za-z0-9/_-]*$")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    public_url: str | None = Field(default=None, max_length=2048)
    """The URL clients use (the OAuth resource URL tokens must name); default ``http(s)://host:port/path``."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Extra Host header values accepted besides the bind address (DNS-rebinding protection)."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Origin header values accepted from browsers (any other Origin is refused with 403)."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    required_scopes: list[str] = Field(default_factory=list)
    """OAuth scopes every token must carry (403 insufficient_scope otherwise); API keys carry none."""
    authorization_servers: list[str] = Field(default_factory=list)
    """Published in the protected-resource metadata; default: the configured JWT issuers (none for API keys and dev
    tokens; introspection needs it said here, its settings name an endpoint, not an issuer)."""
    max_sessions_per_principal: int = Field(default=32, ge=1, le=10_000)
    """Open MCP sessions (``Mcp-Session-Id``, protocol 2025-11-25 and earlier) one credential may hold across all
    server processes of the namespace (sessions are in NATS); another ``initialize`` is answered 429 (audited
    ``too_many_sessions``) until one ends (``DELETE``, or idle for ``session_idle_s``). Handshakes running at
    the same moment on different processes may each take the last place. Env:
    ``NATS_MCP_HTTP_MAX_SESSIONS_PER_PRINCIPAL``."""
    session_idle_s: float = Field(default=1800.0, ge=10, le=7 * 86_400)
    """An MCP session no request has used for this long ends (its record in NATS expires; each process's copy of it
    ends after as long without a request there). Env: ``NATS_MCP_HTTP_SESSION_IDLE_S``."""
    initialize_rate: RateSettings = Field(default_factory=lambda: RateSettings(rate_per_s=2.0, burst=32))
    """How fast one credential may open MCP sessions in one server process (a token bucket: up to its cap at once, then
    2 a second); faster is answered 429 with ``Retry-After`` (audited ``initialize_rate_limited``). Neither bound
    applies with ``--insecure-dev``, where every client is the same principal.
    Env: ``NATS_MCP_HTTP_INITIALIZE_RATE_RATE_PER_S``, ``NATS_MCP_HTTP_INITIALIZE_RATE_BURST``."""
    sse_resume_s: float = Field(default=600.0, ge=0, le=86_400)
    """How long SSE events are kept in NATS for a client to resume a dropped stream with ``Last-Event-ID`` (the age
    limit of the namespace's ``nmcp_<namespace>_sse`` stream); 0: no event store, no resumption, no priming events.
    Env: ``NATS_MCP_HTTP_SSE_RESUME_S``."""
    sse_retry_ms: int = Field(default=2000, ge=0, le=600_000)
    """The ``retry`` field of the priming event that starts each SSE stream (protocol 2025-11-25): how long a
    client waits before it reconnects a dropped stream. Env: ``NATS_MCP_HTTP_SSE_RETRY_MS``."""
    drain_delay_s: float = Field(default=0.0, ge=0, le=300)
    """On SIGTERM/SIGINT ``GET /readyz`` answers 503 at once; requests are still served for this long (so load
    balancers see it and stop sending) before new ones are refused (503, ``Retry-After``, ``Connection: close``).
    The Kubernetes manifests set it to the time endpoints take to drop the pod (docs/deployment.md).
    Env: ``NATS_MCP_HTTP_DRAIN_DELAY_S``."""
    drain_timeout_s: float = Field(default=20.0, ge=0, le=3600)
    """Then how long requests in flight get to finish; SSE streams still open at this deadline end with a
    ``retry:`` hint (``GET`` streams and ``subscriptions/listen`` at once) so clients reconnect elsewhere. A second
    signal cuts the wait short. Env: ``NATS_MCP_HTTP_DRAIN_TIMEOUT_S``."""
    port_file: Path | None = None
    """Write the bound port here once listening (tests and scripts with port 0)."""

    @model_validator(mode="after")
    def _pair(self) -> HttpSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None
