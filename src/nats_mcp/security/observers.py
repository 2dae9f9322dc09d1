"""The observer seam: one audit feed handed to several recorders (the audit log, metrics, anomaly detection).

The guard and the transports record each call and security event once, to one :class:`AuditRecorder`;
:class:`Fanout` passes it on to every recorder in order. ``security/`` knows only the protocol: the
recorders of :mod:`nats_mcp.observe` are plugged in where the server is assembled.
"""

from __future__ import annotations

import logging

from nats_mcp.security.audit.event import AuditEvent, AuditRecorder

log = logging.getLogger("nats_mcp.security")


class Fanout:
    """An :class:`AuditRecorder` that records to ``audit`` (errors pass through, as before), then to each observer
    (an observer's failure is logged and never fails a tool call)."""

    def __init__(self, audit: AuditRecorder, *observers: AuditRecorder) -> None:
        self.audit = audit
        self.observers: list[AuditRecorder] = list(observers)

    def add(self, observer: AuditRecorder) -> None:
        self.observers.append(observer)

    def record(self, event: AuditEvent) -> None:
        self.audit.record(event)
        for observer in self.observers:
            try:
                observer.record(event)
            except Exception:
                log.exception("audit observer %s failed", type(observer).__name__)
