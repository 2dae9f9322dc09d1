"""Unit tests of what build_server changes in the SDK's per-request machinery: the span middleware, the stamp."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mcp.server import Server
from mcp.server._otel import OpenTelemetryMiddleware

from nats_mcp.api.server import build_server
from nats_mcp.config.observe import TracingSettings
from nats_mcp.observe import tracing


@pytest.fixture
def traced() -> Iterator[None]:
    tracing.setup_tracing(TracingSettings(enabled=True, exporter="none"))
    yield
    tracing.shutdown_tracing()


def test_no_span_middleware_while_tracing_is_off() -> None:
    assert not tracing.enabled()
    assert not any(isinstance(m, OpenTelemetryMiddleware) for m in build_server().middleware)


def test_the_span_middleware_stays_when_tracing_is_on(traced: None) -> None:
    assert any(isinstance(m, OpenTelemetryMiddleware) for m in build_server().middleware)


def test_the_server_info_stamp_is_the_sdks_and_fresh_on_each_access() -> None:
    server = build_server()
    sdk_stamp = Server.server_info_stamp.fget(server)  # type: ignore[attr-defined]
    first = server.server_info_stamp
    assert first == sdk_stamp and first["icons"]
    first["icons"][0]["src"] = "changed"  # a caller owns what it got: the next result's stamp is untouched
    first["name"] = "changed"
    assert server.server_info_stamp == sdk_stamp
