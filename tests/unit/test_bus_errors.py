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
