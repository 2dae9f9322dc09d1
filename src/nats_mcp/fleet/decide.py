"""The fleet decision boundary: a pure function from one snapshot of a target to the starts and stops it needs.

No I/O and no clock of its own (``now`` comes in), so it is tested exhaustively with generated snapshots: it never
asks for more instances than ``max`` counting those still starting, never stops below ``min``, never starts while
a crash backoff runs, and gives every decision its reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Action = Literal["start", "stop"]
Queues = Mapping[tuple[str, str | None], tuple[int, int]]
"""(pending, in flight) per (capability, work boundary or None for unbounded items), as the queues count them."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance of a target as the snapshot sees it; ``online``: its agent's registry presence reads online."""

    id: str
    started_at: float
    online: bool


@dataclass(frozen=True, slots=True)
class TargetView:
    """Everything one decision about one target needs, read at one moment."""

    name: str
    min: int
    max: int
    pending_per_agent: int
    startup_grace_s: float
    idle_timeout_s: float
    pending: int
    """Items waiting (not claimed, not blocked) over the target's capabilities."""
    in_flight: int
    instances: tuple[Instance, ...]
    """This target's instances the fleet knows to be running or still starting."""
    others_online: int = 0
    """Online agents with one of the capabilities that the fleet did not start (people's, another fleet's)."""
    idle_since: float | None = None
    """Since when nothing was pending or in flight for the target (None: busy now)."""
    backoff_until: float = 0.0
    """No start before this (a crash backoff)."""
    bounded_pending: int = 0
    """The part of ``pending`` in work boundaries: agents the fleet did not start may lack those, so they do not
    count against it."""


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    target: str
    reason: str
    instance: str | None = None
    """The instance to stop (None for a start: the mechanism names the new one)."""


def takes(boundaries: Sequence[str], boundary: str | None) -> bool:
    """Whether a target declaring ``boundaries`` may take items of ``boundary`` (None: unbounded, any target)."""
    return boundary is None or "*" in boundaries or boundary in boundaries


def work_for(capabilities: Sequence[str], boundaries: Sequence[str], queues: Queues) -> tuple[int, int, int]:
    """(pending, in flight, pending in boundaries) over a target's capabilities and only the boundaries it may take:
    work of any other boundary never asks for (or keeps) one of its instances."""
    pending = in_flight = bounded = 0
    for (capability, boundary), (waiting, taken) in queues.items():
        if capability in capabilities and takes(boundaries, boundary):
            pending, in_flight = pending + waiting, in_flight + taken
            bounded += waiting if boundary is not None else 0
    return pending, in_flight, bounded


def wanted(view: TargetView) -> int:
    """How many instances the target should have for its pending work, before idleness is considered."""
    need = 0
    if view.pending > 0:
        need = math.ceil(view.pending / view.pending_per_agent) - view.others_online
        need = max(need, math.ceil(view.bounded_pending / view.pending_per_agent))
    return min(max(need, view.min), view.max)


def decide(view: TargetView, now: float) -> list[Decision]:
    """The starts or stops ``view`` calls for at ``now`` (at most one kind per round; empty when all is well)."""
    live = len(view.instances)
    starting = sum(1 for i in view.instances if not i.online and now - i.started_at < view.startup_grace_s)
    want = wanted(view)
    if live < want:
        if now < view.backoff_until:
            return []  # the crash that set the backoff was decided (and reported) when it was seen
        why = (
            f"below min {view.min}"
            if view.pending == 0 or live < view.min
            else f"pending {view.pending} > {view.pending_per_agent}/agent for {live} live ({starting} starting)"
        )
        return [Decision("start", view.name, f"{why}; want {want}, max {view.max}") for _ in range(want - live)]
    if live > view.max:
        # Only after a failover that found more than max (a dead leader's starts): trim the newest.
        extra = sorted(view.instances, key=lambda i: i.started_at, reverse=True)[: live - view.max]
        return [Decision("stop", view.name, f"{live} live > max {view.max}", i.id) for i in extra]
    idle_for = now - view.idle_since if view.idle_since is not None else 0.0
    idle = view.pending == 0 and view.in_flight == 0 and view.idle_since is not None
    if idle and live > view.min and idle_for >= view.idle_timeout_s:
        victims = sorted(view.instances, key=lambda i: i.started_at, reverse=True)[: live - view.min]
        reason = f"idle {idle_for:.1f}s >= {view.idle_timeout_s:g}s; down to min {view.min}"
        return [Decision("stop", view.name, reason, i.id) for i in victims]
    return []


def backoff_s(failures: int, base_s: float, cap_s: float) -> float:
    """The wait before the next start after ``failures`` crashes in a row: base, doubling, capped."""
    if failures <= 0:
        return 0.0
    return float(min(base_s * 2 ** min(failures - 1, 30), cap_s))
