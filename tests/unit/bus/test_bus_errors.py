"""Unit tests of how nats-py failures met mid-call become the contract's error codes."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest

from nats_mcp.bus.errors import translate


@pytest.mark.parametrize(
    "exc",
    [
        nats.errors.TimeoutError(),
        nats.errors.ConnectionClosedError(),
        nats.errors.NoRespondersError(),
        nats.js.errors.ServiceUnavailableError(),
        nats.js.errors.NoStreamResponseError(),  # a cluster electing a stream leader (found by the failover test)
    ],
)
def test_transient_failures_are_nats_unavailable(exc: Exception) -> None:
    error = translate(exc)
    assert error is not None
    assert error.code == "nats_unavailable"
    assert error.hint


def test_oversize_payload_is_limit_exceeded() -> None:
    error = translate(nats.errors.MaxPayloadError())
    assert error is not None
    assert error.code == "limit_exceeded"


def test_other_exceptions_are_not_translated() -> None:
    assert translate(ValueError("x")) is None
    assert translate(nats.js.errors.BadRequestError()) is None


@pytest.mark.parametrize(
    ("err_code", "description"),
    [
        (10047, "insufficient storage resources available"),
        (10023, "insufficient resources"),
        (None, "maximum bytes exceeded"),
    ],
)
def test_a_full_store_is_limit_exceeded_even_as_a_503(err_code: int | None, description: str) -> None:
    for kind in (nats.js.errors.APIError, nats.js.errors.ServiceUnavailableError):
        error = translate(kind(code=503, err_code=err_code, description=description))
        assert error is not None and error.code == "limit_exceeded", (kind, description)
        assert "no room" in error.message and "work.max_bytes" in str(error.hint)
