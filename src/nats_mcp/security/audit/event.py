"""The audit event boundary: one value describing a tool call or security event, and who records it.

The guard, the transports and the dashboard build one :class:`AuditEvent` per call or refusal and hand it to one
:class:`AuditRecorder` (the hash-chained log, metrics, anomaly detection, fanned out by ``security/observers.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from nats_mcp.security.principal import Principal

AuditKind = Literal[
    "tool_call", "auth_failure", "denied", "rate_limited", "locked_out", "limit_exceeded", "anomaly", "fleet_decision"
]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One call or security event. ``arguments`` are digested by the log and never kept (or pass ``args_digest``);
    ``method`` is the kind of credential of an authentication failure (api_key, jwt, bearer, mtls, none), for
    metrics: the audit chain does not store it."""

    kind: AuditKind
    principal: Principal | None = None
    transport: str | None = None
    peer: str | None = None
    tool: str | None = None
    namespace: str | None = None
    outcome: str = "ok"
    latency_ms: float | None = None
    arguments: Mapping[str, Any] | None = None
    args_digest: str | None = None
    reason: str | None = None
    method: str | None = None

    def fields(self) -> dict[str, Any]:
        """Everything but the kind, as a dict (for tests and debugging)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "kind"}


class AuditRecorder(Protocol):
    """Where audit events go (the hash-chained audit log, or nothing; or several: ``security/observers.py``)."""

    def record(self, event: AuditEvent) -> None: ...


class NoAudit:
    """The recorder of a server run without an audit log."""

    def record(self, event: AuditEvent) -> None:
        return None
