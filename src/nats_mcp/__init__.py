"""nats-mcp-server: MCP tools for AI agents coordinating through NATS JetStream (package root)."""

from typing import Any

__version__: str  # set on first use, by __getattr__ below


def __getattr__(name: str) -> Any:
    # ``__version__`` is read from the installed metadata on first use: importlib.metadata and its lookup cost every
    # command's start-up ~50 ms, and most never print the version.
    if name != "__version__":
        raise AttributeError(f"module 'nats_mcp' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("nats-mcp-server")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
