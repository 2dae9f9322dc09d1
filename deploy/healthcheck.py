"""The container health-check boundary: is the server in this container answering on its configured port?

Run by the image's HEALTHCHECK (Kubernetes uses its own probes, see deploy/kubernetes/). It reads the settings
exactly as ``nats-mcp serve`` does (environment, NATS_MCP_CONFIG, ...), then:

* HTTP transport: GET ``/healthz``: 200 while the server is up and NATS connected, 503 without NATS.
* gRPC transport: a TCP connection to the port. The gRPC port demands a client certificate, which this
  container does not hold; ``grpc.health_port`` serves ``grpc.health.v1`` (which follows NATS) without TLS
  for probes (the Kubernetes manifests use it).

Exit 0 healthy, 1 not. Standard library and the installed package only; nothing is written.
"""

from __future__ import annotations

import socket
import ssl
import sys
import urllib.request

from nats_mcp.config.loader import ConfigError, load_settings

TIMEOUT_S = 4.0


def _loopback(host: str) -> str:
    # A wildcard bind is reached on loopback; a specific address is reached on itself.
    if host in ("0.0.0.0", ""):  # noqa: S104 - compared, not bound
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def check() -> str | None:
    """None when healthy, else why not."""
    try:
        settings = load_settings().settings
    except ConfigError as exc:
        return f"settings: {exc}"
    if settings.transport == "grpc":
        g = settings.grpc
        try:
            with socket.create_connection((_loopback(g.host), g.port), timeout=TIMEOUT_S):
                return None
        except OSError as exc:
            return f"gRPC port {g.port}: {exc}"
    if settings.transport != "http":
        return None  # stdio has no port; the process being alive is all there is
    h = settings.http
    scheme = "https" if h.tls else "http"
    host = _loopback(h.host)
    host = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{host}:{h.port}/healthz"
    context = None
    if h.tls:
        # Our own certificate names the public host, not loopback: this only checks that TLS is served.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as response:  # noqa: S310 - fixed scheme
            return None if response.status == 200 else f"{url}: HTTP {response.status}"
    except OSError as exc:
        return f"{url}: {exc}"


def main() -> int:
    problem = check()
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
