"""Observability of a real server in process: real NATS, the real guard and MCP server, the SDK's in-memory client.

A scripted scenario leaves the expected counters, histograms and sampled gauges; a tool call whose ``_meta``
carries a ``traceparent`` yields a server span in the caller's trace with NATS child spans (in-memory exporter).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from nats_mcp.api.server import build_server, local_security
from nats_mcp.api.tools.coordination import TOOLS
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.config.observe import TracingSettings
from nats_mcp.coord.service import Coordinator
from nats_mcp.observe import tracing
from nats_mcp.observe.assembly import Observability
from nats_mcp.security.guard import Guard
from nats_mcp.security.policy import Policy
from tests.support.env import settings_for
from tests.support.natsserver import NatsServer
from tests.support.stdio import err, ok
from tests.support.work_tools import broadcast, register

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


@dataclass
class Served:
    obs: Observability
    client: Client
    coordinator: Coordinator


@contextlib.asynccontextmanager
async def served(tmp_path: Path, nats_url: str, **env: str) -> AsyncIterator[Served]:
    settings = settings_for(tmp_path, NATS_URL=nats_url, NATS_MCP_NAMESPACE="team-obs", **env)
    conn = NatsConnection(settings)
    obs = Observability(settings, None, [spec.suffix for spec in TOOLS])
    guard = Guard(settings.security, Policy.load(None), obs.recorder)
    coordinator = Coordinator(conn, settings)
    conn.add_listener(coordinator.on_nats_event)
    conn.add_listener(obs.on_nats_event)
    conn.start()
    try:
        await obs.start(coordinator)
        security = local_security(guard, settings.security, coordinator.layout.namespace)
        server = build_server(coordinator, coordinator.local_caller, settings.tool_prefix, security)
        async with Client(server) as client:
            yield Served(obs, client, coordinator)
    finally:
        await obs.close()
        await coordinator.close()
        await conn.close()


async def test_scripted_scenario_leaves_the_expected_metrics(tmp_path: Path, nats_server: NatsServer) -> None:
    async with served(tmp_path, nats_server.url, NATS_MCP_OBSERVE_METRICS_SAMPLE_INTERVAL_S="3600") as s:
        metrics = s.obs.metrics
        assert metrics is not None and s.obs.sampler is not None

        def value(name: str, **labels: str) -> float:
            assert metrics is not None
            return metrics.registry.get_sample_value(name, labels) or 0.0

        await register(s.client, "python")
        for _ in range(3):
            await ok(s.client, "warp_handle_get")
        await broadcast(s.client, "t-1")
        await broadcast(s.client, "t-2")
        assert await err(s.client, "warp_registry_get_info", guid="0" * 32) == "not_found"
        assert await err(s.client, "warp_channels_send", channel="nope", message="hi") == "not_found"
        assert await err(s.client, "warp_handle_set", handle="Not A Handle!") == "invalid_name"
        assert await err(s.client, "warp_work_broadcast", taskId="t-3") == "invalid_argument"

        calls = "nats_mcp_tool_calls_total"
        assert value(calls, tool="registry_register", transport="stdio", outcome="ok") == 1
        assert value(calls, tool="handle_get", transport="stdio", outcome="ok") == 3
        assert value(calls, tool="work_broadcast", transport="stdio", outcome="ok") == 2
        assert value(calls, tool="registry_get_info", transport="stdio", outcome="not_found") == 1
        assert value(calls, tool="channels_send", transport="stdio", outcome="not_found") == 1
        assert value(calls, tool="handle_set", transport="stdio", outcome="invalid_name") == 1
        assert value(calls, tool="work_broadcast", transport="stdio", outcome="invalid_argument") == 1
        hist = "nats_mcp_tool_call_duration_seconds"
        assert value(hist + "_count", tool="handle_get", transport="stdio") == 3
        assert value(hist + "_bucket", tool="handle_get", transport="stdio", le="+Inf") == 3
        assert value(hist + "_sum", tool="work_broadcast", transport="stdio") > 0
        assert value("nats_mcp_nats_connected") == 1

        assert await s.obs.sampler.sample()
        assert value("nats_mcp_agents", status="online") == 1
        assert value("nats_mcp_work_pending", capability="python") == 2
        assert value("nats_mcp_work_in_flight", capability="python") == 0
        await ok(s.client, "warp_work_claim", capability="python")
        assert await s.obs.sampler.sample()
        assert value("nats_mcp_work_pending", capability="python") == 1
        assert value("nats_mcp_work_in_flight", capability="python") == 1


@pytest.fixture
def spans() -> AsyncIterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.setup_tracing(TracingSettings(enabled=True, exporter="none"), exporter)
    try:
        yield exporter  # type: ignore[misc]
    finally:
        tracing.shutdown_tracing()
        exporter.shutdown()


async def test_a_traceparent_continues_the_callers_trace_with_nats_child_spans(
    tmp_path: Path, nats_server: NatsServer, spans: InMemorySpanExporter
) -> None:
    async with served(tmp_path, nats_server.url) as s:
        await ok(s.client, "warp_handle_get")  # the identity is acquired: later calls are the tool's own work
        spans.clear()
        meta = {"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"}
        result = await s.client.call_tool("warp_registry_register", {"agentType": "tracer"}, meta=meta)  # type: ignore[arg-type]
        assert not result.is_error
        found = spans.get_finished_spans()
        by_id = {x.context.span_id: x for x in found}
        [call] = [x for x in found if x.name == "tool registry_register"]
        assert f"{call.context.trace_id:032x}" == TRACE_ID
        attributes = dict(call.attributes or {})
        assert attributes["mcp.tool.name"] == "registry_register" and attributes["nats_mcp.outcome"] == "ok"
        assert attributes["nats_mcp.transport"] == "stdio" and attributes["enduser.id"]
        # Its parent is the SDK's server span for the request, whose parent is the caller's span.
        assert call.parent is not None
        request = by_id[call.parent.span_id]
        assert request.kind == SpanKind.SERVER and request.name == "tools/call warp_registry_register"
        assert request.parent is not None and f"{request.parent.span_id:016x}" == PARENT_SPAN
        children = [x for x in found if x.parent is not None and x.parent.span_id == call.context.span_id]
        assert children and {x.name for x in children} <= {"nats request", "nats publish"}
        assert all(x.context.trace_id == call.context.trace_id for x in children)
        assert all(str((x.attributes or {})["messaging.destination.name"]) for x in children)

        spans.clear()
        assert await err(s.client, "warp_registry_get_info", guid="0" * 32) == "not_found"  # no traceparent
        [lone] = [x for x in spans.get_finished_spans() if x.name == "tool registry_get_info"]
        assert f"{lone.context.trace_id:032x}" != TRACE_ID  # a trace of its own
        assert lone.status.status_code == StatusCode.ERROR
        assert (lone.attributes or {})["nats_mcp.outcome"] == "not_found"
