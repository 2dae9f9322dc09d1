"""The domain error boundary: every failure a tool can report, each with a stable code from the tool contract."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nats_mcp.bus.errors import origin, unreachable
from nats_mcp.core.errors import NatsMcpError


class CoordError(NatsMcpError):
    """A domain failure; ``code`` is stable and ``message`` says what went wrong and what to do."""


class InvalidArgument(CoordError):
    code = "invalid_argument"


class InvalidName(CoordError):
    code = "invalid_name"


class InvalidCursor(CoordError):
    code = "invalid_cursor"


class NotRegistered(CoordError):
    code = "not_registered"


class NotFound(CoordError):
    code = "not_found"


class Forbidden(CoordError):
    code = "forbidden"


class LimitExceeded(CoordError):
    code = "limit_exceeded"


class Conflict(CoordError):
    code = "conflict"


class Cancelled(CoordError):
    """The item was cancelled by its submitter (or an admin): stop working on it."""

    code = "cancelled"


class NatsUnavailable(CoordError):
    code = "nats_unavailable"


@contextmanager
def nats_errors() -> Iterator[None]:
    """NATS timeouts and lost connections become ``nats_unavailable`` (domain errors keep their own code)."""
    try:
        yield
    except Exception as exc:
        if not unreachable(exc):
            raise
        raise NatsUnavailable(f"NATS did not answer in time ({origin(exc)}); the call can be retried") from None
