"""The metrics listener on a real loopback socket: 200 with the text format, 404/405/400 elsewhere, 403 to addresses
not allowed; and the HTTP transport's route with the same filter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from nats_mcp.config.observe import MetricsSettings
from nats_mcp.observe.exposition import MetricsListener, http_route
from nats_mcp.observe.metrics import Metrics
from nats_mcp.security.audit.event import AuditEvent


async def raw(port: int, request: bytes) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(), body


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics(["channels_list"])
    m.record(AuditEvent("tool_call", transport="stdio", tool="channels_list", outcome="ok", latency_ms=2.0))
    return m


async def test_listener_serves_metrics_to_loopback_only(tmp_path: Path, metrics: Metrics) -> None:
    port_file = tmp_path / "metrics.port"
    listener = MetricsListener(metrics, "127.0.0.1", 0, MetricsSettings().allow_from)
    port = await listener.start(port_file)
    try:
        assert port_file.read_text() == f"{port}\n"
        status, body = await raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == "HTTP/1.1 200 OK"
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        calls = families["nats_mcp_tool_calls"].samples
        assert [(s.labels["tool"], s.value) for s in calls if s.name.endswith("_total")] == [("channels_list", 1.0)]
        assert (await raw(port, b"GET /other HTTP/1.1\r\n\r\n"))[0] == "HTTP/1.1 404 Not Found"
        assert (await raw(port, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == "HTTP/1.1 405 Method Not Allowed"
        assert (await raw(port, b"hello\r\n\r\n"))[0] == "HTTP/1.1 400 Bad Request"
    finally:
        await listener.close()

    closed = MetricsListener(metrics, "127.0.0.1", 0, ["10.0.0.0/8"])  # loopback not listed: refused
    port = await closed.start()
    try:
        status, body = await raw(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert status == "HTTP/1.1 403 Forbidden" and b"nats_mcp" not in body
    finally:
        await closed.close()


async def test_listener_ignores_a_client_that_never_finishes_its_request(metrics: Metrics) -> None:
    listener = MetricsListener(metrics, "127.0.0.1", 0, ["127.0.0.0/8"])
    port = await listener.start()
    try:
        _, silent = await asyncio.open_connection("127.0.0.1", port)  # says nothing
        status, _ = await raw(port, b"GET /metrics HTTP/1.1\r\n\r\n")  # others are still served
        assert status == "HTTP/1.1 200 OK"
        silent.close()
    finally:
        await listener.close()


@pytest.mark.parametrize(("client", "status"), [(("127.0.0.1", 5000), 200), (("203.0.113.7", 5000), 403)])
async def test_http_route_filters_by_address(metrics: Metrics, client: tuple[str, int], status: int) -> None:
    app = Starlette(routes=[http_route(metrics, MetricsSettings().allow_from)])
    transport = httpx2.ASGITransport(app=app, client=client)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as hc:
        response = await hc.get("/metrics")
    assert response.status_code == status
    assert ("nats_mcp_tool_calls_total" in response.text) == (status == 200)


def test_allow_from_must_be_networks() -> None:
    with pytest.raises(ValueError, match="not an address"):
        MetricsSettings(allow_from=["localhost"])
