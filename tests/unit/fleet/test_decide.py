"""Boundary of the fleet's pure decision function: generated snapshots, the invariants that must hold for all."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nats_mcp.fleet.decide import Instance, TargetView, backoff_s, decide, wanted

NOW = 1_000.0


@st.composite
def views(draw: st.DrawFn) -> TargetView:
    hi = draw(st.integers(1, 6))
    lo = draw(st.integers(0, hi))
    n = draw(st.integers(0, hi + 2))  # more than max: what a failover may find
    instances = tuple(Instance(f"i{k}", NOW - draw(st.floats(0, 100)), draw(st.booleans())) for k in range(n))
    idle = draw(st.none() | st.floats(0, 200))
    return TargetView(
        name="t",
        min=lo,
        max=hi,
        pending_per_agent=draw(st.integers(1, 10)),
        startup_grace_s=draw(st.floats(0.1, 50)),
        idle_timeout_s=draw(st.floats(0.1, 100)),
        pending=draw(st.integers(0, 100)),
        in_flight=draw(st.integers(0, 5)),
        instances=instances,
        others_online=draw(st.integers(0, 3)),
        idle_since=None if idle is None else NOW - idle,
        backoff_until=NOW + draw(st.floats(-10, 10)),
    )


@settings(max_examples=300, deadline=None)
@given(views())
def test_invariants(view: TargetView) -> None:
    decisions = decide(view, NOW)
    live = len(view.instances)
    starts = sum(1 for d in decisions if d.action == "start")
    stops = [d for d in decisions if d.action == "stop"]
    assert all(d.reason and d.target == "t" for d in decisions)
    assert not (starts and stops), "one kind of decision per round"
    # never more than max, counting the ones still starting (all of view.instances are counted)
    assert live + starts <= max(view.max, live)
    if starts:
        assert live + starts <= view.max
        assert view.backoff_until <= NOW, "no start while a crash backoff runs"
    # never below min, except trimming a failover's excess above max (which stops at max >= min)
    assert live - len(stops) >= min(view.min, live)
    assert len({d.instance for d in stops}) == len(stops)
    assert {d.instance for d in stops} <= {i.id for i in view.instances}
    if stops and live <= view.max:
        assert view.pending == 0 and view.in_flight == 0, "busy targets are not scaled down"
        assert view.idle_since is not None and NOW - view.idle_since >= view.idle_timeout_s


def _view(**kw: object) -> TargetView:
    base: dict[str, object] = dict(
        name="t",
        min=0,
        max=3,
        pending_per_agent=2,
        startup_grace_s=10,
        idle_timeout_s=5,
        pending=0,
        in_flight=0,
        instances=(),
    )
    return TargetView(**{**base, **kw})  # type: ignore[arg-type]


def test_examples() -> None:
    # 20 waiting, 2 per agent, no one there: start up to max, reasons say why
    first = decide(_view(pending=20), NOW)
    assert [d.action for d in first] == ["start"] * 3
    assert "pending 20" in first[0].reason and "max 3" in first[0].reason
    # the ones still starting count: nothing more
    starting = tuple(Instance(f"i{k}", NOW - 1, False) for k in range(3))
    assert decide(_view(pending=20, instances=starting), NOW) == []
    # one pending item with an agent already starting: nothing (no second start for the same item)
    assert decide(_view(pending=1, instances=starting[:1]), NOW) == []
    # someone else's online agent covers the demand
    assert wanted(_view(pending=2, others_online=1)) == 0
    # in backoff: no start
    assert decide(_view(pending=20, backoff_until=NOW + 1), NOW) == []
    # idle past the timeout: down to min, newest first
    two = (Instance("old", NOW - 50, True), Instance("new", NOW - 10, True))
    stops = decide(_view(min=1, instances=two, idle_since=NOW - 6), NOW)
    assert [(d.action, d.instance) for d in stops] == [("stop", "new")]
    assert "idle" in stops[0].reason
    # idle, but not long enough; or work in flight: keep them
    assert decide(_view(min=1, instances=two, idle_since=NOW - 4), NOW) == []
    assert decide(_view(min=1, instances=two, in_flight=1, idle_since=None), NOW) == []
    # below min with nothing to do: start to min
    assert [d.action for d in decide(_view(min=2), NOW)] == ["start", "start"]
    # more than max (after a failover): trim the newest
    four = tuple(Instance(f"i{k}", NOW - k, True) for k in range(4))
    assert [d.instance for d in decide(_view(instances=four, pending=9), NOW)] == ["i0"]


def test_backoff_doubles_and_caps() -> None:
    assert [backoff_s(n, 1, 5) for n in range(5)] == [0, 1, 2, 4, 5]
