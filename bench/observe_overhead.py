"""Benchmark boundary of observability: what metrics, anomaly detection and tracing cost per tool call, in one run.

    .venv/bin/python bench/observe_overhead.py [--quick]

The cheapest real tool (``warp_channels_list``: no NATS round trip, so the observation is the largest
share of the call it can be) is called sequentially through the MCP SDK's in-memory client against the
server with the guard, built three ways and sampled alternately, round after round:

a. observe off: the guard with no observer (the baseline);
b. metrics: the Prometheus recorder on the guard's feed (what ``observe.metrics.enabled`` adds);
c. metrics + anomaly detection (the default ``serve`` configuration).

Then an SDK tracer provider is installed (batch-free simple processor, an exporter that drops spans, so
export I/O is not measured; a sampler that can be switched off) and, alternately within each round:

d. tracing off: no span of ours and the sampler drops every other span (the closest a process that has a
   provider gets to having none);
e. the provider recording: the MCP SDK's own request spans (client and server side of the in-memory pair);
f. tracing on: our tool span as well (what ``observe.tracing.enabled`` adds over e).

OpenTelemetry's provider is process-wide and cannot be removed, so d-f cannot alternate with a-c; each
phase is paired within itself. Target: metrics on and tracing off cost at most 10 % per call.
Writes bench/results/observe_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcp import Client  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult  # noqa: E402

from nats_mcp.api.server import build_server, local_security  # noqa: E402
from nats_mcp.api.tools.coordination import TOOLS, needs_of  # noqa: E402
from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.config.loader import load_settings  # noqa: E402
from nats_mcp.config.observe import AnomalySettings, TracingSettings  # noqa: E402
from nats_mcp.coord.context import Caller  # noqa: E402
from nats_mcp.coord.service import Coordinator  # noqa: E402
from nats_mcp.observe import tracing  # noqa: E402
from nats_mcp.observe.anomaly import AnomalyDetector  # noqa: E402
from nats_mcp.observe.metrics import Metrics  # noqa: E402
from nats_mcp.security.audit.event import NoAudit  # noqa: E402
from nats_mcp.security.guard import CallContext, Guard  # noqa: E402
from nats_mcp.security.identity import local_principal  # noqa: E402
from nats_mcp.security.observers import Fanout  # noqa: E402
from nats_mcp.security.policy import Policy  # noqa: E402

TOOL = "warp_channels_list"


PHASE2 = ("p2: metrics + anomaly, sampler off", "p2: metrics + anomaly, SDK spans", "p2: metrics + anomaly + tracing")


class Switch(Sampler):
    """Records every span while ``on``, none while off."""

    on = True

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return (ALWAYS_ON if self.on else ALWAYS_OFF).should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "switch"


class Dropping(SpanExporter):
    """Accepts every span and keeps none: the tracing pipeline runs, no export I/O is measured."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


async def rate(client: Client, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        result = await client.call_tool(TOOL, {})
        assert not result.is_error, result
    return calls / (time.perf_counter() - started)


def recorder(metrics: bool, anomaly: bool) -> Fanout:
    fan = Fanout(NoAudit())
    if metrics:
        fan.add(Metrics(spec.suffix for spec in TOOLS))
    if anomaly:
        fan.add(AnomalyDetector(AnomalySettings(), fan))
    return fan


async def measure(variants: dict[str, Any], rounds: int, calls: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(Client(server, mode="legacy")) for name, server in variants.items()
        }
        for client in clients.values():
            await rate(client, 50)  # warm up
        for _ in range(rounds):
            for name, client in clients.items():
                samples[name].append(await rate(client, calls))
    return samples


async def guard_alone(settings: Any, policy: Policy, fans: dict[str, Fanout]) -> dict[str, float]:
    """Microseconds one Guard.call costs around a call that does nothing, per recorder: medians of 9 rounds of
    10,000 calls, the recorders taking turns within each round (this machine is shared: turns pair the noise)."""
    ctx = CallContext(local_principal(settings.security), "stdio", "bench")
    guards = {name: Guard(settings.security, policy, fan) for name, fan in fans.items()}

    async def nothing() -> str:
        return "ok"

    def outcome(result: str) -> str:
        return result

    runs: dict[str, list[float]] = {name: [] for name in guards}
    for _ in range(9):
        for name, guard in guards.items():
            started = time.perf_counter()
            for _ in range(10_000):
                await guard.call(ctx, "channels_list", {}, nothing, outcome, needs=needs_of("channels_list"))
            runs[name].append((time.perf_counter() - started) / 10_000 * 1e6)
    return {name: statistics.median(values) for name, values in runs.items()}


def paired(base: list[float], values: list[float]) -> float:
    """Median over rounds of the extra time per call as a share of the baseline call of the same round."""
    return statistics.median(b / v - 1 for b, v in zip(base, values, strict=True))


async def main(quick: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="nmcp-observe-bench-"))
    settings = load_settings(
        environ={"HOME": str(tmp), "NATS_URL": "nats://127.0.0.1:1", "NATS_MCP_NAMESPACE": "bench"}
    ).settings
    conn = NatsConnection(settings)  # never started: the measured tool needs no NATS
    coordinator = Coordinator(conn, settings)
    me = Caller(guid="0" * 32, namespace="bench", project_id="0" * 16, owner="bench")

    async def caller() -> Caller:
        return me

    policy = Policy.load(None)

    def server(metrics: bool, anomaly: bool) -> Any:
        guard = Guard(settings.security, policy, recorder(metrics, anomaly))
        security = local_security(guard, settings.security, "bench")
        return build_server(coordinator, caller, settings.tool_prefix, security)

    rounds, calls = (11, 200) if quick else (31, 300)
    first = await measure(
        {"observe off": server(False, False), "metrics": server(True, False), "metrics + anomaly": server(True, True)},
        rounds,
        calls,
    )

    fans = {
        "observe off": recorder(False, False),
        "metrics": recorder(True, False),
        "metrics + anomaly": recorder(True, True),
    }
    direct = await guard_alone(settings, policy, fans)

    exporter = Dropping()
    switch = Switch()
    trace.set_tracer_provider(TracerProvider(sampler=switch))  # setup_tracing adds its exporter to this one
    tracing.setup_tracing(TracingSettings(enabled=True, exporter="none"), exporter)
    tracer = tracing._tracer
    plain, traced = server(True, True), server(True, True)
    # Per batch: tracing off (no span of ours, every other span dropped by the sampler: as close to "no provider"
    # as a process that has one gets), the provider recording (the SDK's spans), and tracing on (ours too).
    second: dict[str, list[float]] = {name: [] for name in PHASE2}
    async with Client(plain, mode="legacy") as a, Client(traced, mode="legacy") as b:
        for client in (a, b):
            await rate(client, 50)
        for _ in range(rounds):
            tracing._tracer, switch.on = None, False
            second[PHASE2[0]].append(await rate(a, calls))
            switch.on = True
            second[PHASE2[1]].append(await rate(a, calls))
            tracing._tracer = tracer
            second[PHASE2[2]].append(await rate(b, calls))
    tracing.shutdown_tracing()

    base = first["observe off"]
    base_median = statistics.median(base)
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "rounds": rounds,
        "calls_per_round": calls,
        "tool": TOOL,
        "spans_exported": exporter.spans,
        "variants": {},
    }
    print(f"{'variant':34} {'median calls/s':>15} {'min..max':>17} {'added per call':>15}")
    for name, values in {**first, **second}.items():
        median = statistics.median(values)
        added = paired(base, values) if name in first else paired(second[PHASE2[0]], values)
        report["variants"][name] = {
            "median": median,
            "min": min(values),
            "max": max(values),
            "added": added,
            "paired": name in first,
        }
        note = "" if name in first else " (vs p2 sampler off)"
        print(f"{name:34} {median:15.0f} {min(values):8.0f}..{max(values):<8.0f} {added * 100:14.1f}%{note}")
    span_cost = paired(second[PHASE2[1]], second[PHASE2[2]])
    report["tool_span_added"] = span_cost
    print(
        f"our tool span (and its attributes) alone: {span_cost * 100:.1f} % per call; "
        f"{exporter.spans} spans went through the exporter"
    )
    report["guard_call_us"] = direct
    call_us = 1e6 / base_median
    print("one Guard.call around a no-op call: " + ", ".join(f"{n} {us:.1f} us" for n, us in direct.items()))
    for name in ("metrics", "metrics + anomaly"):
        extra = direct[name] - direct["observe off"]
        share = extra / call_us * 100
        print(f"  {name} adds {extra:.1f} us per call = {share:.2f} % of a baseline call ({call_us:.0f} us)")
    metrics_cost = report["variants"]["metrics + anomaly"]["added"]
    print(
        f"target: metrics on, tracing off at most 10 % per call; measured {metrics_cost * 100:.1f} % "
        f"(metrics alone {report['variants']['metrics']['added'] * 100:.1f} %)"
    )
    report["target"] = {
        "measure": "time per call with metrics + anomaly detection on (paired)",
        "baseline": "observe off",
        "ratio": 1 + metrics_cost,
        "target": "<= 1.10x",
        "met": metrics_cost <= 0.10,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "observe_overhead.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 30 s)")
    asyncio.run(main(parser.parse_args().quick))
