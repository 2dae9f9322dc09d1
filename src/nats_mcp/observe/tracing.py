"""The tracing boundary: OpenTelemetry set-up (off by default) and the span of each tool call.

With tracing on, every ``tools/call`` gets a span (tool, transport, principal, outcome) in the caller's
trace when the request's ``_meta`` carries a W3C ``traceparent``: the MCP SDK's own server span continues
it, ours is that span's child (or continues the trace itself where the SDK opened none). NATS requests
and publishes made during the call are child spans (``bus/connection.py``, through the OpenTelemetry API
only). With tracing off no SDK provider is installed, every span is a no-op and the bus opens none (it
checks for a recording parent first): the cost is a flag test and a context lookup per call.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from nats_mcp.config.observe import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("nats_mcp.observe")
T = TypeVar("T")

_propagator = TraceContextTextMapPropagator()
_tracer: Tracer | None = None


class TracingError(Exception):
    """Tracing asked for something this installation cannot do (e.g. OTLP without its exporter package)."""


def enabled() -> bool:
    return _tracer is not None


def _exporter(cfg: TracingSettings) -> SpanExporter | None:
    if cfg.exporter == "none":
        return None
    if cfg.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)  # never stdout: in stdio mode it carries the MCP protocol
    for module in (
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    ):
        try:
            otlp = importlib.import_module(module)  # optional: installed by the operator who wants OTLP
        except ImportError:
            continue
        # Endpoint, headers, TLS: the standard OTEL_EXPORTER_OTLP_* variables.
        exporter: SpanExporter = otlp.OTLPSpanExporter()
        return exporter
    raise TracingError(
        "observe.tracing.exporter is otlp but no OTLP exporter is installed: pip install opentelemetry-exporter-otlp"
    )


def setup_tracing(cfg: TracingSettings, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Turn tracing on as ``cfg`` says (``exporter`` overrides the configured one, e.g. in-memory in tests).

    The SDK provider is process-global in OpenTelemetry and can be installed once: a later call adds its
    exporter to the provider already there.
    """
    global _tracer
    if not cfg.enabled:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": cfg.service_name}))
        trace.set_tracer_provider(provider)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        configured = _exporter(cfg)
        if configured is not None:
            provider.add_span_processor(BatchSpanProcessor(configured))
    _tracer = provider.get_tracer("nats_mcp")
    return provider


def shutdown_tracing() -> None:
    """Stop tracing tool calls and flush what the exporters hold."""
    global _tracer
    _tracer = None
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush(5000)


def parent_context(meta: Mapping[str, Any] | None) -> Any:
    """The caller's trace context from a request's ``_meta`` (``traceparent``/``tracestate``), or None."""
    if not meta:
        return None
    traceparent = meta.get("traceparent")
    if not isinstance(traceparent, str):
        return None
    carrier = {"traceparent": traceparent[:128]}
    tracestate = meta.get("tracestate")
    if isinstance(tracestate, str):
        carrier["tracestate"] = tracestate[:512]
    return _propagator.extract(carrier)


async def traced_call(
    tool: str,
    transport: str,
    subject: str,
    meta: Mapping[str, Any] | None,
    run: Callable[[], Awaitable[T]],
    outcome_of: Callable[[T], str],
) -> T:
    """Run one tool call inside its server span (when tracing is on; else just run it)."""
    tracer = _tracer
    if tracer is None:
        return await run()
    attributes = {"mcp.tool.name": tool[:100], "nats_mcp.transport": transport, "enduser.id": subject[:200]}
    # The MCP SDK opens a server span per request, from _meta's traceparent, whenever an SDK provider is installed:
    # ours is its child. Without one (another SDK version, a transport that skips it), ours continues the trace.
    inside = trace.get_current_span().is_recording()
    with tracer.start_as_current_span(
        f"tool {tool[:100]}",
        context=None if inside else parent_context(meta),
        kind=SpanKind.INTERNAL if inside else SpanKind.SERVER,
        attributes=attributes,
    ) as span:
        result = await run()
        outcome = outcome_of(result)
        span.set_attribute("nats_mcp.outcome", outcome)
        if outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, outcome))
        return result
