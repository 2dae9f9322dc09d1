"""The bus's error boundary: what can go wrong talking to NATS, with a stable code and a hint for humans."""

from __future__ import annotations

from nats_mcp.core.errors import NatsMcpError


class BusError(NatsMcpError):
    """A NATS-level failure. ``code`` is stable (the MCP layer maps it to a tool error); ``hint`` is for humans."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
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


class PayloadTooLargeError(BusError):
    """A message over the server's max_payload."""

    code = "limit_exceeded"


class StorageExhaustedError(BusError):
    """JetStream has no room: the server's storage limits (or a stream's) refuse to store more."""

    code = "limit_exceeded"


STORAGE_ERR_CODES = frozenset({10023, 10047})
"""JetStream API errors meaning "no room": insufficient resources, insufficient storage resources available."""
_STORAGE_WORDS = ("insufficient", "maximum bytes exceeded", "maximum messages exceeded", "resource limits exceeded")


class NatsConfigError(BusError):
    """The NATS settings cannot work together (caught before any connection attempt)."""

    code = "invalid_argument"


def translate(exc: BaseException) -> BusError | None:
    """A nats-py failure met in the middle of a call, as a bus error (None: not a NATS availability problem).

    Timeouts, a closed/draining/reconnecting connection, no responders and JetStream being unavailable
    all mean the same to a caller: NATS cannot serve this right now, retry later.
    """
    import nats.errors
    import nats.js.errors

    transient = (
        nats.errors.TimeoutError,
        nats.errors.ConnectionClosedError,
        nats.errors.ConnectionDrainingError,
        nats.errors.ConnectionReconnectingError,
        nats.errors.NoRespondersError,
        nats.errors.FlushTimeoutError,
        nats.errors.StaleConnectionError,
        nats.errors.OutboundBufferLimitError,
        nats.js.errors.ServiceUnavailableError,
        # A publish no stream answered: on a cluster, a stream whose leader is being elected (a node died).
        nats.js.errors.NoStreamResponseError,
    )
    # Before the transient check: a full store answers 503 (ServiceUnavailableError) too, and is no passing state.
    if isinstance(exc, nats.js.errors.APIError):
        description = str(exc.description or "")
        if exc.err_code in STORAGE_ERR_CODES or any(w in description.lower() for w in _STORAGE_WORDS):
            return StorageExhaustedError(
                f"JetStream has no room for this: {description or 'storage limit reached'}.",
                "free space, raise the server's or account's JetStream storage limit (max_file_store), or lower "
                "what nats-mcp reserves: channels[].maxBytes, work.max_bytes",
            )
    if isinstance(exc, transient):
        return NatsUnavailableError(
            f"NATS did not complete the operation ({type(exc).__name__}).",
            "retry in a moment; `nats-mcp doctor` checks the connection",
        )
    if isinstance(exc, nats.errors.MaxPayloadError):
        return PayloadTooLargeError("the message is larger than the NATS server accepts (max_payload)")
    return None
