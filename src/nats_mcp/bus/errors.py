"""The bus's error boundary: what can go wrong talking to NATS, with a stable code and a hint for humans."""

from __future__ import annotations


class BusError(Exception):
    """A NATS-level failure. ``code`` is stable (the MCP layer maps it to a tool error)."""

    code = "internal"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} Hint: {self.hint}" if self.hint else self.message


class NatsUnavailableError(BusError):
    """NATS is not reachable right now; the connection keeps retrying in the background."""

    code = "nats_unavailable"


class NatsConnectError(NatsUnavailableError):
    """One connection attempt failed; ``kind`` says why (unreachable, auth, tls, config)."""

    def __init__(self, message: str, hint: str | None = None, *, kind: str = "unreachable", method: str = "") -> None:
        super().__init__(message, hint)
        self.kind = kind
        self.method = method


class NatsConfigError(BusError):
    """The NATS settings cannot work together (caught before any connection attempt)."""

    code = "invalid_argument"
