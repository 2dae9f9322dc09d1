"""The observer seam: one audit feed handed to several recorders (the audit log, metrics, anomaly detection).

The guard and the transports record each call and security event once, to one :class:`AuditRecorder`;
:class:`Fanout` passes it on to every recorder in order. ``security/`` knows only the protocol: the
recorders of :mod:`nats_mcp.observe` are plugged in where the server is assembled.
"""

from __future__ import annotations

import logging

from nats_mcp.core.aiotasks import NextStep
from nats_mcp.security.audit.event import AuditEvent, AuditRecorder

log = logging.getLogger("nats_mcp.security")


class Fanout:
    """An :class:`AuditRecorder` that records to ``audit`` (errors pass through, as before), then to each observer
    (an observer's failure is logged and never fails a tool call).

    Inside the event loop the observers see each event in the loop's next step, in order, not during the call
    that records it: a tool call's answer goes out first (the audit log defers its own sealing the same way,
    security/audit/log.py). Outside a loop they see it at once."""

    def __init__(self, audit: AuditRecorder, *observers: AuditRecorder) -> None:
        self.audit = audit
        self.observers: list[AuditRecorder] = list(observers)
        self._waiting: NextStep[AuditEvent] = NextStep(self._observe)

    def add(self, observer: AuditRecorder) -> None:
        self.observers.append(observer)

    def record(self, event: AuditEvent) -> None:
        self.audit.record(event)
        if self.observers and not self._waiting.add(event):
            self._observe(event)

    def observe_waiting(self) -> None:
        """Hand the events waiting for the loop's next step to the observers, in order."""
        self._waiting.flush()

    def _observe(self, event: AuditEvent) -> None:
        for observer in self.observers:
            try:
                observer.record(event)
            except Exception:
                log.exception("audit observer %s failed", type(observer).__name__)
