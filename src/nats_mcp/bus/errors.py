"""The bus's error boundary: what can go wrong talking to NATS, with a stable code and a hint for humans."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

import nats.errors
import nats.js.errors

from nats_mcp.core.errors import NatsMcpError


class BusError(NatsMcpError):
    """A NATS-level failure. ``code`` is stable (the MCP layer maps it to a tool error); ``hint`` is for humans."""

    origin: str | None = None
    """The nats-py class this error was translated from at the bus edge (:func:`nats_edge`), if any."""

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


# -- nats-py failures at the bus edge ------------------------------------------------------------------
# The domain (coord/) never sees a nats-py exception it must tell apart: :func:`nats_edge` turns each into one of
# these. Their ``code`` and ``message`` are what :func:`translate` gives for the original (the tool contract's
# answer is unchanged); ``origin`` names the nats-py class.


class JetStreamError(BusError):
    """JetStream refused a request (an API error): ``status`` (HTTP-like), ``err_code`` and ``description``."""

    def __init__(
        self, message: str, *, status: int | None = None, err_code: int | None = None, description: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.err_code = err_code
        self.description = description


class ResourceNotFound(JetStreamError):
    """No such stream, consumer, bucket or stored message."""


class KeyNotFound(ResourceNotFound):
    """No such KV key, or it was deleted or purged (``KeyValue.get``)."""


class WrongLastSequence(JetStreamError):
    """A compare-and-set write found another revision than the one it was based on."""


class JetStreamUnavailable(JetStreamError):
    """No JetStream answers (not enabled, or a stream's leader is being elected)."""


class NoStreamResponse(NatsUnavailableError):
    """A JetStream publish no stream answered (the stream is missing, or its leader is being elected)."""


class NatsTimeout(NatsUnavailableError, TimeoutError):
    """NATS did not answer within the timeout (also a builtin :class:`TimeoutError`)."""


class NoResponders(NatsUnavailableError):
    """Nobody listens on a request's subject."""


class ConnectionLost(NatsUnavailableError):
    """The connection is closed, draining, reconnecting or stale, or no server is left to try."""


class NatsClientError(BusError):
    """Any other nats-py failure."""


_CONNECTION_LOST = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.NoServersError,
    nats.errors.OutboundBufferLimitError,
)
_UNREACHABLE = frozenset({"ConnectionClosedError", "NoServersError"})


def _api_error(exc: nats.js.errors.APIError) -> JetStreamError:
    kind: type[JetStreamError] = JetStreamError
    if isinstance(exc, nats.js.errors.KeyNotFoundError):  # what KeyValue.get raises for a deleted key too
        kind = KeyNotFound
    elif isinstance(exc, nats.js.errors.NotFoundError):
        kind = ResourceNotFound
    elif isinstance(exc, nats.js.errors.KeyWrongLastSequenceError):
        kind = WrongLastSequence
    elif isinstance(exc, nats.js.errors.ServiceUnavailableError):
        kind = JetStreamUnavailable
    # Some nats-py subclasses (KeyNotFoundError, ...) never set the API fields.
    description = str(getattr(exc, "description", None) or "")
    return kind(
        f"JetStream refused the request: {description or type(exc).__name__}",
        status=getattr(exc, "code", None),
        err_code=getattr(exc, "err_code", None),
        description=description,
    )


def from_nats(exc: BaseException) -> BaseException:
    """The bus error for a nats-py exception; any other exception is returned unchanged."""
    if not isinstance(exc, nats.errors.Error):
        return exc
    error: BusError
    if isinstance(exc, nats.js.errors.APIError):
        error = _api_error(exc)
    elif isinstance(exc, nats.js.errors.NoStreamResponseError):
        error = NoStreamResponse("no stream answered the publish")
    elif isinstance(exc, nats.errors.TimeoutError):
        error = NatsTimeout("NATS did not answer in time")
    elif isinstance(exc, nats.errors.NoRespondersError):
        error = NoResponders("no responders")
    elif isinstance(exc, nats.errors.MaxPayloadError):
        error = PayloadTooLargeError("the message is larger than the NATS server accepts (max_payload)")
    elif isinstance(exc, _CONNECTION_LOST):
        error = ConnectionLost("the NATS connection is not usable")
    else:
        error = NatsClientError(f"NATS failed: {type(exc).__name__}")
    try:
        known = translate(exc)
    except AttributeError:  # an API error without its fields: not an availability problem
        known = None
    # The tool contract's answer stays what it was for the raw failure: translate's, else internal.
    error.code = known.code if known is not None else "internal"
    if known is not None:
        error.message, error.hint = str(known), None
    error.origin = type(exc).__name__
    return error


@contextmanager
def nats_edge() -> Iterator[None]:
    """Run a nats-py call; a nats-py exception leaves it as the bus error :func:`from_nats` gives (chained)."""
    try:
        yield
    except nats.errors.Error as exc:
        raise from_nats(exc) from exc


def origin(exc: BaseException) -> str:
    """The nats-py class name behind a bus error made at the edge (else the exception's own class name)."""
    return getattr(exc, "origin", None) or type(exc).__name__


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means NATS did not answer: a timeout (any), a closed connection, no server left."""
    if isinstance(exc, TimeoutError | nats.errors.ConnectionClosedError | nats.errors.NoServersError):
        return True
    return isinstance(exc, ConnectionLost) and origin(exc) in _UNREACHABLE


def raise_api_error(error: Mapping[str, Any]) -> NoReturn:
    """Raise the bus error of a JetStream API error answer (``{"code", "err_code", "description"}``)."""
    with nats_edge():
        nats.js.errors.APIError.from_error(dict(error))
    raise JetStreamError(f"JetStream refused the request: {error.get('description', '')}")  # from_error always raises
