"""Boundary of the fleet's pure decision function: generated snapshots, the invariants that must hold for all."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nats_mcp.fleet.decide import Instance, Queues, TargetView, backoff_s, decide, takes, wanted, work_for

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


# -- work boundaries: a target starts only for work it may take ---------------------------------------------------

CAPS, BOUNDS = ("python", "rust"), (None, "corporate", "personal")


def _for(capabilities: list[str], boundaries: list[str], queues: Queues, **kw: object) -> TargetView:
    pending, in_flight, bounded = work_for(capabilities, boundaries, queues)
    return _view(pending=pending, in_flight=in_flight, bounded_pending=bounded, **kw)


@st.composite
def bounded(draw: st.DrawFn) -> tuple[list[str], list[str], Queues, int, int]:
    queues = {
        (c, b): (draw(st.integers(0, 6)), draw(st.integers(0, 2))) for c in CAPS for b in BOUNDS if draw(st.booleans())
    }
    caps = draw(st.lists(st.sampled_from(CAPS), min_size=1, unique=True))
    bounds = draw(st.lists(st.sampled_from(["corporate", "personal", "*"]), unique=True))
    return caps, bounds, queues, draw(st.integers(1, 4)), draw(st.integers(0, 3))


@settings(max_examples=150, deadline=None)
@given(bounded())
def test_a_target_never_starts_for_a_boundary_it_may_not_take(
    case: tuple[list[str], list[str], Queues, int, int],
) -> None:
    caps, bounds, queues, most, others = case
    view = _for(caps, bounds, queues, max=most, others_online=others)
    starts = [d for d in decide(view, NOW) if d.action == "start"]
    mine = {k: v for k, v in queues.items() if k[0] in caps and takes(bounds, k[1])}
    # work it may not take changes nothing: the decisions are those without it
    assert decide(_for(caps, bounds, mine, max=most, others_online=others), NOW) == decide(view, NOW)
    if not any(waiting for waiting, _ in mine.values()):
        assert starts == [], "no pending work it may take: no start"
    # agents the fleet did not start may lack the boundary: they never stand in for its bounded work
    if any(waiting for (_, b), (waiting, _) in mine.items() if b is not None):
        assert starts


def test_a_pending_corporate_item_starts_only_the_corporate_target() -> None:
    queues: Queues = {("python", "corporate"): (1, 0), ("python", None): (0, 0)}
    corporate, plain = _for(["python"], ["corporate"], queues), _for(["python"], [], queues)
    assert [d.action for d in decide(corporate, NOW)] == ["start"] and decide(plain, NOW) == []
    assert [d.action for d in decide(_for(["python"], ["*"], queues), NOW)] == ["start"]
    # someone's online python agent (maybe without corporate) does not cover it; it does cover unbounded work
    assert wanted(_for(["python"], ["corporate"], queues, others_online=1)) == 1
    assert wanted(_for(["python"], [], {("python", None): (1, 0)}, others_online=1)) == 0
    # in flight in a boundary it may not take: not its work, so it may go idle
    assert work_for(["python"], [], {("python", "corporate"): (0, 2)}) == (0, 0, 0)
