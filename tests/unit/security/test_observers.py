"""Unit tests of the observer seam (security/observers.py): the audit recorder first, the observers in the loop's
next step and in order, an observer's failure never reaching the caller."""

from __future__ import annotations

import asyncio

from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.observers import Fanout


class Seen:
    def __init__(self, fail: bool = False) -> None:
        self.tools: list[str | None] = []
        self.fail = fail

    def record(self, event: AuditEvent) -> None:
        self.tools.append(event.tool)
        if self.fail:
            raise RuntimeError("observer broke")


async def test_observers_see_events_after_the_recording_step_in_order() -> None:
    audit, broken, metrics = Seen(), Seen(fail=True), Seen()
    fanout = Fanout(audit, broken, metrics)
    for tool in ("a", "b", "c"):
        fanout.record(AuditEvent("tool_call", tool=tool))
    assert audit.tools == ["a", "b", "c"]  # the audit recorder hears it during the call (it defers its own sealing)
    assert metrics.tools == []  # the observers after the answer
    await asyncio.sleep(0)  # one step: the callback record() scheduled runs before this task resumes
    assert broken.tools == ["a", "b", "c"] and metrics.tools == ["a", "b", "c"]  # one failing does not stop the next
    fanout.record(AuditEvent("tool_call", tool="d"))
    fanout.observe_waiting()  # at once, when a reader cannot wait for the step
    assert metrics.tools == ["a", "b", "c", "d"]
    await asyncio.sleep(0)
    assert metrics.tools == ["a", "b", "c", "d"]  # the scheduled step found nothing left: nothing twice


def test_outside_a_loop_observers_see_events_at_once() -> None:
    audit, metrics = Seen(), Seen()
    Fanout(audit, metrics).record(AuditEvent("tool_call", tool="x"))
    assert metrics.tools == ["x"]
