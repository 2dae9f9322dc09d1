"""nats-mcp-server: MCP tools for AI agents coordinating through NATS JetStream (package root)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nats-mcp-server")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
