"""Unit tests of the bus edge: each nats-py failure becomes a bus error the domain catches, with the contract's code."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest

from nats_mcp.bus import errors as bus
from nats_mcp.coord.errors import NatsUnavailable, nats_errors
from nats_mcp.core.errors import NatsMcpError


def api(cls: type[nats.js.errors.APIError], code: int, err_code: int, description: str) -> Exception:
    """The error as nats-py raises it: its KV errors carry fewer (or none) of the API fields."""
    if issubclass(cls, nats.js.errors.KeyNotFoundError):
        return cls()
    if issubclass(cls, nats.js.errors.KeyWrongLastSequenceError):
        return cls(description=description)
    return cls(code=code, err_code=err_code, description=description)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (api(nats.js.errors.KeyNotFoundError, 404, 0, "key not found"), bus.KeyNotFound),
        (nats.js.errors.KeyDeletedError(), bus.ResourceNotFound),  # KeyValue.get turns it into KeyNotFoundError
        (api(nats.js.errors.NotFoundError, 404, 10059, "stream not found"), bus.ResourceNotFound),
        (api(nats.js.errors.BucketNotFoundError, 404, 0, "bucket not found"), bus.ResourceNotFound),
        (api(nats.js.errors.KeyWrongLastSequenceError, 400, 10071, "wrong last sequence: 3"), bus.WrongLastSequence),
        (api(nats.js.errors.ServiceUnavailableError, 503, 0, ""), bus.JetStreamUnavailable),
        (api(nats.js.errors.APIError, 400, 10058, "stream name already in use"), bus.JetStreamError),
        (nats.js.errors.NoStreamResponseError(), bus.NoStreamResponse),
        (nats.errors.TimeoutError(), bus.NatsTimeout),
        (nats.errors.FlushTimeoutError(), bus.NatsTimeout),
        (nats.errors.NoRespondersError(), bus.NoResponders),
        (nats.errors.MaxPayloadError(), bus.PayloadTooLargeError),
        (nats.errors.ConnectionClosedError(), bus.ConnectionLost),
        (nats.errors.NoServersError(), bus.ConnectionLost),
        (nats.errors.BadSubjectError(), bus.NatsClientError),
    ],
)
def test_each_nats_failure_has_its_bus_error(exc: Exception, kind: type[bus.BusError]) -> None:
    with pytest.raises(kind) as caught, bus.nats_edge():
        raise exc
    error = caught.value
    assert isinstance(error, NatsMcpError)
    assert error.__cause__ is exc
    assert error.origin == type(exc).__name__
    try:
        known = bus.translate(exc)
    except AttributeError:  # nats-py's KeyNotFoundError has no API fields
        known = None
    # What a caller sees is what the tool contract answered for the raw failure.
    assert error.code == (known.code if known else "internal")
    if known is not None:
        assert error.message == str(known)


def test_api_error_fields_survive_the_edge() -> None:
    error = bus.from_nats(api(nats.js.errors.BadRequestError, 400, 10071, "wrong last sequence: 3"))
    assert isinstance(error, bus.JetStreamError)
    assert (error.status, error.err_code, error.description) == (400, 10071, "wrong last sequence: 3")
    cas = bus.from_nats(api(nats.js.errors.KeyWrongLastSequenceError, 400, 10071, "wrong last sequence: 3"))
    assert isinstance(cas, bus.WrongLastSequence)
    assert cas.description == "wrong last sequence: 3"


def test_a_full_store_stays_limit_exceeded() -> None:
    error = bus.from_nats(api(nats.js.errors.ServiceUnavailableError, 503, 10047, "insufficient storage"))
    assert isinstance(error, bus.JetStreamUnavailable)
    assert error.code == "limit_exceeded"


def test_other_exceptions_pass_the_edge_unchanged() -> None:
    with pytest.raises(KeyError), bus.nats_edge():
        raise KeyError("x")
    assert isinstance(bus.from_nats(ValueError("v")), ValueError)


def test_a_bus_timeout_is_still_a_timeout() -> None:
    assert isinstance(bus.from_nats(nats.errors.TimeoutError()), TimeoutError)


def test_raise_api_error_gives_the_bus_error_of_the_answer() -> None:
    with pytest.raises(bus.ResourceNotFound) as caught:
        bus.raise_api_error({"code": 404, "err_code": 10059, "description": "stream not found"})
    assert caught.value.err_code == 10059


@pytest.mark.parametrize(
    ("exc", "origin"),
    [
        (nats.errors.TimeoutError(), "TimeoutError"),
        (TimeoutError(), "TimeoutError"),
        (nats.errors.ConnectionClosedError(), "ConnectionClosedError"),
        (bus.from_nats(nats.errors.ConnectionClosedError()), "ConnectionClosedError"),
        (bus.from_nats(nats.errors.NoServersError()), "NoServersError"),
        (bus.from_nats(nats.errors.TimeoutError()), "TimeoutError"),
    ],
)
def test_nats_errors_reports_an_unreachable_nats_raw_or_translated(exc: Exception, origin: str) -> None:
    with pytest.raises(NatsUnavailable) as caught, nats_errors():
        raise exc
    assert f"({origin})" in caught.value.message


@pytest.mark.parametrize(
    "exc",
    [
        bus.from_nats(nats.errors.ConnectionReconnectingError()),
        bus.from_nats(api(nats.js.errors.NotFoundError, 404, 10059, "stream not found")),
        ValueError("not NATS"),
    ],
)
def test_nats_errors_lets_everything_else_through(exc: Exception) -> None:
    with pytest.raises(type(exc)), nats_errors():
        raise exc
