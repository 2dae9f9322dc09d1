"""Metrics from the guard's audit feed after a scripted scenario; bounded labels; the sampler; the Grafana dashboard."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nats_mcp.api.tools.coordination import TOOLS, needs_of
from nats_mcp.config.security import SecuritySettings
from nats_mcp.fleet.metrics import FleetMetrics
from nats_mcp.observe.metrics import Metrics
from nats_mcp.observe.sampler import Sampler
from nats_mcp.security import guard as guard_module
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.authn import Credentials
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.guard import CallContext, Guard, Refused
from nats_mcp.security.observers import Fanout
from nats_mcp.security.policy import Policy, parse_policy
from nats_mcp.security.principal import Principal
from tests.support.guard import POLICY, Clock, Recorder

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "nats-mcp.json"
SECRET = "s3cr3t-T0KEN-value-that-must-not-leak"
ALICE = Principal(subject="ci-alice", issuer="https://idp.example", method="jwt", peer="10.1.2.3")


class Refuser:
    """An authentication provider that refuses everything with one reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def authenticate(self, credentials: Credentials) -> Principal:
        raise AuthenticationError(self.reason)


def value(m: Metrics, name: str, **labels: str) -> float:
    found = m.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_scripted_scenario_counts_every_call_refusal_and_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics, audit, clock = Metrics(spec.suffix for spec in TOOLS), Recorder(), Clock()
    # The guard times a call with time.perf_counter: a scripted one here, so the durations (and the histogram
    # buckets they land in) are exact whatever the machine's load.
    perf = Clock()
    monkeypatch.setattr(guard_module, "time", SimpleNamespace(perf_counter=perf, monotonic=time.monotonic))
    settings = SecuritySettings.model_validate(
        {
            "rate_per_principal": {"rate_per_s": 1, "burst": 6},
            "max_request_bytes": 2048,
            "lockout": {"max_failures": 2, "base_s": 30, "max_s": 60, "window_s": 60},
        }
    )
    fanout = Fanout(audit, metrics)
    guard = Guard(settings, Policy(parse_policy(POLICY)), fanout, clock=clock)
    ctx = CallContext(ALICE, "http", "team-a")

    async def quick() -> str:
        return "ok"

    async def slow() -> str:
        perf.now += 0.03  # a call that takes 30 ms
        return "ok"

    async def missing() -> str:
        return "not_found"

    for run in (quick, quick, slow):
        assert await guard.call(ctx, "channels_list", {}, run, lambda r: r, needs=()) == "ok"
    assert await guard.call(ctx, "registry_get_info", {"guid": "x"}, missing, lambda r: r, needs=()) == "not_found"
    for tool, args in (("dlq_discard", {"itemId": "x"}), ("channels_send", {"message": "x" * 4000})):
        with pytest.raises(Refused):
            await guard.call(ctx, tool, args, quick, lambda r: r, needs=needs_of(tool))  # denied by policy; too large
    with pytest.raises(Refused):
        await guard.call(ctx, "channels_list", {}, quick, lambda r: r, needs=())  # the 7th call within the burst of 6
    jwt_like = Credentials(bearer=f"eyJhbGciOi.{SECRET}.sig", peer="10.9.9.9")
    for _ in range(3):  # two failures, then locked out
        with pytest.raises(AuthenticationError):
            await guard.authenticate(Refuser("bad_signature"), jwt_like, "http")
    with pytest.raises(AuthenticationError):
        await guard.authenticate(Refuser("unknown_key"), Credentials(api_key=f"nmk_abc_{SECRET}"), "grpc")

    assert value(metrics, "nats_mcp_tool_calls_total", tool="channels_list", transport="http", outcome="ok") == 0
    fanout.observe_waiting()  # observers see events in the loop's next step (after the answer); this test never yields
    calls = "nats_mcp_tool_calls_total"
    assert value(metrics, calls, tool="channels_list", transport="http", outcome="ok") == 3
    assert value(metrics, calls, tool="registry_get_info", transport="http", outcome="not_found") == 1
    assert value(metrics, calls, tool="dlq_discard", transport="http", outcome="ok") == 0  # refused: never ran
    hist = "nats_mcp_tool_call_duration_seconds"
    assert value(metrics, hist + "_count", tool="channels_list", transport="http") == 3
    assert value(metrics, hist + "_bucket", tool="channels_list", transport="http", le="0.025") == 2
    assert value(metrics, hist + "_bucket", tool="channels_list", transport="http", le="+Inf") == 3
    assert value(metrics, hist + "_sum", tool="channels_list", transport="http") == pytest.approx(0.03)
    refusals = "nats_mcp_refusals_total"
    assert value(metrics, refusals, kind="denied", reason="policy_denied", transport="http") == 1
    assert value(metrics, refusals, kind="limit_exceeded", reason="request_too_large", transport="http") == 1
    assert value(metrics, refusals, kind="rate_limited", reason="rate_limited", transport="http") == 1
    assert value(metrics, refusals, kind="locked_out", reason="locked_out", transport="http") == 1
    failures = "nats_mcp_auth_failures_total"
    assert value(metrics, failures, method="jwt", reason="bad_signature", transport="http") == 1
    assert value(metrics, failures, method="jwt", reason="bad_signature+locked", transport="http") == 1
    assert value(metrics, failures, method="jwt", reason="locked_out", transport="http") == 1
    assert value(metrics, failures, method="api_key", reason="unknown_key", transport="grpc") == 1
    # The audit log got the very same records (one feed).
    assert [r["kind"] for r in audit.records].count("tool_call") == 4
    text = metrics.exposition().decode()
    for leak in (SECRET, "ci-alice", "10.1.2.3", "10.9.9.9", "x" * 100):
        assert leak not in text  # no token, principal, address or argument ever becomes a label


def test_labels_are_bounded() -> None:
    metrics = Metrics(["channels_list"])
    for i in range(50):
        metrics.record(AuditEvent("tool_call", transport="http", tool=f"made_up_{i}", outcome="ok", latency_ms=1))
        metrics.record(AuditEvent("auth_failure", transport="http", reason="r" * 500, method="jwt"))
    assert value(metrics, "nats_mcp_tool_calls_total", tool="other", transport="http", outcome="ok") == 50
    assert "made_up" not in metrics.exposition().decode()
    assert value(metrics, "nats_mcp_auth_failures_total", method="jwt", reason="r" * 48, transport="http") == 50


def test_nats_connection_events() -> None:
    metrics = Metrics()
    metrics.on_nats_event("connected", {})
    assert value(metrics, "nats_mcp_nats_connected") == 1
    metrics.on_nats_event("disconnected", {})
    assert value(metrics, "nats_mcp_nats_connected") == 0
    metrics.on_nats_event("reconnected", {"reconnects": 1})
    metrics.on_nats_event("disconnected", {})
    metrics.on_nats_event("reconnected", {"reconnects": 2})
    assert value(metrics, "nats_mcp_nats_connected") == 1
    assert value(metrics, "nats_mcp_nats_reconnects_total") == 2


async def test_sampler_sets_gauges_replaces_gone_capabilities_and_bounds_them() -> None:
    metrics = Metrics()
    state: dict[str, Any] = {"up": True, "rows": [("python", 3, 1, 0), ("rust", 0, 0, 2)], "fail": False}

    async def work() -> list[tuple[str, int, int, int]]:
        if state["fail"]:
            raise RuntimeError("nats: timeout")
        return list(state["rows"])

    def agents() -> Mapping[str, int]:
        return {"online": 2, "offline": 1}

    sampler = Sampler(
        metrics, connected=lambda: state["up"], agents=agents, work=work, interval_s=1, max_capabilities=2
    )
    assert await sampler.sample()
    assert value(metrics, "nats_mcp_agents", status="online") == 2
    assert value(metrics, "nats_mcp_agents", status="busy") == 0
    assert value(metrics, "nats_mcp_work_pending", capability="python") == 3
    assert value(metrics, "nats_mcp_work_in_flight", capability="python") == 1
    assert value(metrics, "nats_mcp_work_dead_lettered", capability="rust") == 2
    assert value(metrics, "nats_mcp_sampler_last_success_timestamp_seconds") > 0
    state["rows"] = [("a", 1, 0, 0), ("b", 5, 0, 0), ("c", 2, 0, 0), ("d", 0, 0, 1)]
    assert await sampler.sample()
    text = metrics.exposition().decode()
    assert 'capability="python"' not in text and 'capability="rust"' not in text  # gone capabilities go
    assert value(metrics, "nats_mcp_work_pending", capability="b") == 5
    assert value(metrics, "nats_mcp_work_pending", capability="c") == 2
    assert value(metrics, "nats_mcp_work_pending", capability="_other") == 1  # a and d summed
    assert value(metrics, "nats_mcp_work_dead_lettered", capability="_other") == 1
    state["fail"] = True
    assert not await sampler.sample()
    assert value(metrics, "nats_mcp_sampler_errors_total") == 1
    assert value(metrics, "nats_mcp_work_pending", capability="b") == 5  # last good values stay
    state["up"] = False
    assert not await sampler.sample()
    assert value(metrics, "nats_mcp_nats_connected") == 0
    assert value(metrics, "nats_mcp_sampler_errors_total") == 1  # NATS away is not a sampling error


def test_every_dashboard_query_names_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exposed = Metrics().names() | FleetMetrics().names()  # the servers' and the fleet coordinators' (its own row)
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]  # rows have none
    queries += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert len(queries) >= 10
    used: set[str] = set()
    for query in queries:
        names = set(re.findall(r"\bnats_mcp_[a-z0-9_]+", query))
        assert names, f"a query with no nats-mcp metric: {query}"
        assert names <= exposed, f"unknown metrics {names - exposed} in {query}"
        used |= names
    # Every metric family is on the dashboard somewhere (a metric nobody looks at is a metric to drop).
    families = {family.name for m in (Metrics(), FleetMetrics()) for family in m.registry.collect()}
    assert all(any(name.startswith(f) for name in used) for f in families), families


def test_the_dashboard_check_catches_a_wrong_name() -> None:
    exposed = Metrics().names()
    assert "nats_mcp_tool_calls_total" in exposed and "nats_mcp_tool_call_duration_seconds_bucket" in exposed
    assert "nats_mcp_tool_calls" not in exposed and "nats_mcp_tool_call_total" not in exposed
