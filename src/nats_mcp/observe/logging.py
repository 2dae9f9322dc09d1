"""The log boundary: JSON lines (or text) on stderr, every line passed through the one redaction function.

stdout is never written: in stdio mode it carries the MCP protocol.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from nats_mcp.config.observe import LoggingSettings
from nats_mcp.core import reqctx
from nats_mcp.core.redact import redact, redact_mapping

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class RedactingFormatter(logging.Formatter):
    """Formats a record as one JSON object or one text line; secrets never survive it."""

    def __init__(self, fmt: str = "json") -> None:
        super().__init__()
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        for key, value in reqctx.current().items():  # the request being served, where known (set by the guard)
            extra.setdefault(key, value)
        exc = redact(self.formatException(record.exc_info)) if record.exc_info else None
        if self.json:
            entry: dict[str, Any] = {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname,
                "logger": record.name,
                "msg": message,
            }
            entry.update(redact_mapping(extra))
            if exc:
                entry["exc"] = exc
            return json.dumps(entry, default=str)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.name}: {message}"
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in redact_mapping(extra).items())
        return f"{line}\n{exc}" if exc else line


def setup_logging(cfg: LoggingSettings, stream: TextIO | None = None) -> None:
    """Route every logger to stderr with redaction, at the configured level."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(cfg.format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(cfg.level)
    # nats-py logs reconnect noise at ERROR with raw exception text; keep it, redacted, but not below WARNING.
    logging.getLogger("nats").setLevel(max(logging.WARNING, logging.getLevelName(cfg.level)))
