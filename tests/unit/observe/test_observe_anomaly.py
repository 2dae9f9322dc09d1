"""Anomaly detection on synthetic clocks: bursts and failed-login storms alert, steady traffic and slow ramps do not,
a new tool after the warm-up alerts once; alerts are audit records of kind ``anomaly`` and a metric."""

from __future__ import annotations

from typing import Any

import pytest

from nats_mcp.config.observe import AnomalySettings
from nats_mcp.observe.anomaly import AnomalyDetector
from nats_mcp.observe.metrics import Metrics
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.observers import Fanout
from nats_mcp.security.principal import Principal

ALICE = Principal(subject="alice", issuer="idp", method="jwt", peer="10.0.0.1")
BOB = Principal(subject="bob", issuer="idp", method="jwt", peer="10.0.0.2")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sink:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def record(self, event: AuditEvent) -> None:
        self.records.append((event.kind, event.fields()))

    def anomalies(self) -> list[str]:
        return [f["reason"].split(":")[0] for k, f in self.records if k == "anomaly"]


def detector(**over: Any) -> tuple[AnomalyDetector, Sink, Clock]:
    cfg = AnomalySettings.model_validate(
        {"window_s": 10, "burst_min": 30, "burst_factor": 4, "warmup_s": 120, "auth_failure_min": 5, **over}
    )
    sink, clock = Sink(), Clock()
    return AnomalyDetector(cfg, sink, clock=clock), sink, clock


def traffic(
    d: AnomalyDetector, clock: Clock, per_s: float, seconds: float, who: Principal = ALICE, tool: str = "channels_read"
) -> None:
    """``per_s`` calls a second, evenly spaced, for ``seconds``."""
    step = 1 / per_s
    end = clock.now + seconds
    while clock.now < end:
        d.record(AuditEvent("tool_call", principal=who, transport="http", peer=who.peer, tool=tool, outcome="ok"))
        clock.now += step


def test_steady_traffic_never_alerts() -> None:
    d, sink, clock = detector()
    traffic(d, clock, per_s=5, seconds=600)  # 50 a window: above burst_min, steady
    assert sink.anomalies() == []


def test_slow_ramp_does_not_alert() -> None:
    d, sink, clock = detector()
    rate = 1.0
    for _ in range(60):  # +5 % a window for 10 minutes: 1/s -> ~18/s
        traffic(d, clock, per_s=rate, seconds=10)
        rate *= 1.05
    assert sink.anomalies() == []


def test_idle_then_usual_pace_is_not_a_burst() -> None:
    d, sink, clock = detector()
    traffic(d, clock, per_s=5, seconds=100)
    clock.now += 3600  # an hour away
    traffic(d, clock, per_s=5, seconds=100)
    assert sink.anomalies() == []


def test_burst_alerts_once_per_window_with_the_figures() -> None:
    d, sink, clock = detector()
    traffic(d, clock, per_s=1, seconds=120)  # baseline ~10 a window
    traffic(d, clock, per_s=20, seconds=10)  # 200 in one window
    assert sink.anomalies() == ["burst"]
    _kind, fields = sink.records[0]
    assert fields["principal"] is ALICE and fields["outcome"] == "alert" and fields["transport"] == "http"
    assert "calls in 10s" in fields["reason"] and "baseline 10" in fields["reason"]
    traffic(d, clock, per_s=20, seconds=10)  # still bursting: the next window alerts again (baseline lags)
    assert sink.anomalies() == ["burst", "burst"]


def test_a_burst_of_one_principal_does_not_touch_another() -> None:
    d, sink, clock = detector()
    for _ in range(12):
        traffic(d, clock, per_s=1, seconds=5, who=ALICE)
        traffic(d, clock, per_s=1, seconds=5, who=BOB)
    traffic(d, clock, per_s=30, seconds=5, who=BOB)
    assert [f["principal"].subject for k, f in sink.records] == ["bob"]


def test_no_rate_alert_during_warm_up_windows() -> None:
    d, sink, clock = detector()
    traffic(d, clock, per_s=20, seconds=10)  # a new principal starting fast: its pace is not known yet
    assert sink.anomalies() == []


def test_new_tool_after_warm_up_alerts_once() -> None:
    d, sink, clock = detector()
    traffic(d, clock, per_s=1, seconds=60, tool="channels_read")
    traffic(d, clock, per_s=1, seconds=5, tool="channels_send")  # still warming up: learnt, no alert
    assert sink.anomalies() == []
    traffic(d, clock, per_s=1, seconds=100, tool="channels_read")
    traffic(d, clock, per_s=1, seconds=3, tool="dlq_discard")
    traffic(d, clock, per_s=1, seconds=3, tool="channels_send")
    assert sink.anomalies() == ["new_tool"]
    assert sink.records[0][1]["tool"] == "dlq_discard"
    # A refused call names a tool too: probing a tool never used counts.
    d.record(
        AuditEvent("denied", principal=ALICE, transport="http", peer=ALICE.peer, tool="work_claim", outcome="forbidden")
    )
    assert sink.anomalies() == ["new_tool", "new_tool"]


def test_new_tool_alerts_can_be_turned_off() -> None:
    d, sink, clock = detector(new_tool=False)
    traffic(d, clock, per_s=1, seconds=200, tool="channels_read")
    traffic(d, clock, per_s=1, seconds=2, tool="dlq_discard")
    assert sink.anomalies() == []


def test_failed_login_storm_from_one_address_alerts() -> None:
    d, sink, clock = detector()
    for _ in range(4):  # a few typos: below the minimum
        d.record(
            AuditEvent("auth_failure", principal=None, transport="http", peer="10.9.9.9", outcome="unauthenticated")
        )
        clock.now += 30
    assert sink.anomalies() == []
    for _ in range(40):
        d.record(
            AuditEvent("auth_failure", principal=None, transport="http", peer="10.6.6.6", outcome="unauthenticated")
        )
        clock.now += 0.1
    assert sink.anomalies() == ["auth_failures"]
    assert sink.records[0][1]["peer"] == "10.6.6.6" and sink.records[0][1]["principal"] is None


def test_disabled_detector_sees_nothing() -> None:
    d, sink, clock = detector(enabled=False)
    traffic(d, clock, per_s=1, seconds=120)
    traffic(d, clock, per_s=50, seconds=10)
    assert sink.anomalies() == []


def test_state_is_bounded() -> None:
    d, _sink, clock = detector(max_principals=10)
    for i in range(100):
        who = Principal(subject=f"p{i}", issuer="idp", method="jwt")
        d.record(AuditEvent("tool_call", principal=who, transport="http", tool="channels_read", outcome="ok"))
        d.record(
            AuditEvent("auth_failure", principal=None, transport="http", peer=f"10.0.1.{i}", outcome="unauthenticated")
        )
        clock.now += 1
    assert len(d.principals) == 10 and len(d.addresses) == 10


def test_alerts_are_audited_and_counted_through_the_fanout() -> None:
    audit = Sink()
    fan = Fanout(audit)
    metrics = Metrics(["channels_read"])
    fan.add(metrics)
    clock = Clock()
    d = AnomalyDetector(AnomalySettings(window_s=10, burst_min=30, warmup_s=0), fan, clock=clock)
    fan.add(d)

    def call(tool: str) -> None:
        fan.record(
            AuditEvent(
                "tool_call", principal=ALICE, transport="http", peer=ALICE.peer, tool=tool, outcome="ok", latency_ms=1.0
            )
        )

    call("channels_read")
    clock.now += 1
    call("channels_send")
    assert [k for k, _ in audit.records] == ["tool_call", "tool_call", "anomaly"]
    assert metrics.registry.get_sample_value("nats_mcp_anomalies_total", {"kind": "new_tool"}) == 1
    # The unknown tool is counted under "other": no label from outside the registered table.
    assert (
        metrics.registry.get_sample_value(
            "nats_mcp_tool_calls_total", {"tool": "other", "transport": "http", "outcome": "ok"}
        )
        == 1
    )


@pytest.mark.parametrize("field", ["alpha", "window_s"])
def test_settings_refuse_nonsense(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AnomalySettings.model_validate({field: 0})
