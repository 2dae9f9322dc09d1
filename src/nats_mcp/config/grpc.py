"""The gRPC settings boundary: the ``grpc`` section of the settings (bind address, mTLS, limits, keepalive)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from nats_mcp.config.section import Section


class GrpcSettings(Section):
    """gRPC transport (``serve --transport grpc``): mutual TLS unless ``--insecure-dev`` on loopback."""

    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8766, ge=0, le=65535)
    """0: an OS-assigned port (printed at start and written to ``port_file`` if set)."""
    tls_cert_file: Path | None = None
    """The server's certificate chain (PEM). Re-read when it changes (rotation without restart)."""
    tls_key_file: Path | None = None
    client_ca_file: Path | None = None
    """CA bundle client certificates must chain to (required while ``require_client_cert`` is on)."""
    require_client_cert: bool = True
    """Mutual TLS: refuse any connection without a client certificate from ``client_ca_file``. Off: clients
    authenticate with a bearer JWT or API key in the ``authorization`` metadata instead."""
    min_tls: Literal["1.2", "1.3"] = "1.2"
    """Checked on every call (gRPC Python cannot set it on the handshake)."""
    public_url: str | None = Field(default=None, max_length=2048)
    """The URL tokens must name as audience (besides ``urn:nats-mcp:local``); default ``grpcs://host:port``."""
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Largest frame (one JSON-RPC message) accepted or sent; larger ones end the call with RESOURCE_EXHAUSTED."""
    max_concurrent_streams: int = Field(default=100, ge=1, le=100_000)
    """Calls (streams) in flight per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)."""
    max_concurrent_rpcs: int | None = Field(default=1000, ge=1)
    """Calls in flight in the whole server; further calls are refused with RESOURCE_EXHAUSTED."""
    keepalive_time_s: float = Field(default=60, ge=1)
    """The server pings an idle connection this often."""
    keepalive_timeout_s: float = Field(default=20, ge=1)
    """... and closes it when the ping is not answered within this."""
    min_client_ping_interval_s: float = Field(default=10, ge=0)
    """Clients pinging more often than this are disconnected (keepalive enforcement)."""
    max_connection_age_s: float | None = Field(default=None, gt=0)
    """Connections are closed (gracefully) after this long, so clients reconnect and rebalance; None: no limit."""
    max_connection_age_grace_s: float = Field(default=30, ge=0)
    max_connection_idle_s: float | None = Field(default=None, gt=0)
    drain_delay_s: float = Field(default=0.0, ge=0, le=300)
    """On SIGTERM/SIGINT ``grpc.health.v1`` answers NOT_SERVING at once; calls are still taken for this long (so
    load balancers see it) before the server stops taking new ones. Env: ``NATS_MCP_GRPC_DRAIN_DELAY_S``."""
    drain_timeout_s: float = Field(default=20.0, ge=0, le=3600)
    """Then how long calls in flight get to finish (``server.stop(grace)``; new calls are refused with UNAVAILABLE,
    which gRPC clients retry on another connection); streams still open then are cancelled. A second signal cuts
    the wait short. Env: ``NATS_MCP_GRPC_DRAIN_TIMEOUT_S``."""
    port_file: Path | None = None
    """Write the bound port here once listening (tests and scripts with port 0)."""
    reflection: bool = False
    """Serve gRPC server reflection (the services' descriptors, for grpcurl and the like). Off: callers must know
    the contract (``proto/nats_mcp/v1/transport.proto``)."""
    health_port: int | None = Field(default=None, ge=0, le=65535)
    """A second port serving only ``grpc.health.v1``, without TLS, for probes that cannot present a client
    certificate (Kubernetes ``grpc:`` probes). Nothing else is served there. 0: an OS-assigned port (printed)."""
    typed_service: bool = True
    """Also serve Google's typed ``model_context_protocol.Mcp`` service (ListTools, CallTool) over the same security."""

    @model_validator(mode="after")
    def _pair(self) -> GrpcSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None
