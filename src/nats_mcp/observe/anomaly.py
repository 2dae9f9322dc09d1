"""The anomaly-detection boundary: per-principal baselines of request rate, per-address baselines of authentication
failures, and first-seen tools, raising a security event when traffic leaves them.

Pure logic over the guard's audit feed (it is an :class:`~nats_mcp.security.guard.AuditRecorder`) and an
injected clock. Counts are kept per fixed window; the baseline is an EWMA of the counts of the windows in
which the key was active (idle windows are skipped, so a principal that comes back at its usual pace is
not a burst), seeded with the first window's count. A window alerts once, as soon as its count exceeds
both ``min`` and ``factor`` × baseline. A tool a principal has never used alerts once, after the
principal's warm-up. Each alert is an ``anomaly`` audit record (and so a metric) sent to ``sink``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nats_mcp.config.observe import AnomalySettings
from nats_mcp.core.lru import LruTable
from nats_mcp.security.audit.event import AuditEvent, AuditRecorder
from nats_mcp.security.principal import Principal

log = logging.getLogger("nats_mcp.observe.anomaly")

RATE_WARMUP_WINDOWS = 3
"""Active windows a principal's rate is learnt over before it can alert (a starting agent's pace is not known)."""
_NOT_FROM_PRINCIPAL = frozenset({"auth_failure", "locked_out", "anomaly"})
_NONE: tuple[Alert, ...] = ()


@dataclass
class Baseline:
    """Per-window counts of one key and the EWMA of its active windows."""

    window: int = -1
    count: int = 0
    baseline: float = 0.0
    windows: int = 0
    """Active windows closed so far."""
    alerted: int = -1

    def hit(self, window: int, alpha: float) -> None:
        if window != self.window:
            if self.count:
                self.baseline = self.count if self.windows == 0 else alpha * self.count + (1 - alpha) * self.baseline
                self.windows += 1
            self.window, self.count = window, 0
        self.count += 1

    def over(self, minimum: int, factor: float, warmup_windows: int) -> bool:
        """Whether the current window just crossed its threshold (True once per window)."""
        if self.windows < warmup_windows or self.alerted == self.window:
            return False
        if self.count >= minimum and self.count > factor * self.baseline:
            self.alerted = self.window
            return True
        return False


@dataclass
class PrincipalState:
    first_seen: float
    rate: Baseline = field(default_factory=Baseline)
    tools: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Alert:
    kind: str
    """burst, auth_failures or new_tool"""
    reason: str
    """The audit record's reason: the kind and the figures that made it."""


class AnomalyDetector:
    """Watches the audit feed; raises ``anomaly`` records into ``sink``."""

    def __init__(
        self, cfg: AnomalySettings, sink: AuditRecorder, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.clock = clock
        self.principals: LruTable[tuple[str, str, str | None], PrincipalState] = LruTable(cfg.max_principals)
        self.addresses: LruTable[str, Baseline] = LruTable(cfg.max_principals)
        self.alerts = 0

    def record(self, event: AuditEvent) -> None:
        kind, principal, transport, peer, tool = event.kind, event.principal, event.transport, event.peer, event.tool
        namespace = event.namespace
        if not self.cfg.enabled or kind == "anomaly":
            return
        now = self.clock()
        window = int(now // self.cfg.window_s)
        if kind in ("auth_failure", "locked_out"):
            found = self._auth_failure(peer or f"({transport or 'local'})", window)
        elif principal is not None and kind not in _NOT_FROM_PRINCIPAL:
            found = self._call(principal, tool, now, window)
        else:
            return
        for alert in found:
            self.alerts += 1
            log.warning(
                "security anomaly: %s (principal %s, address %s)",
                alert.reason,
                principal.subject if principal else "-",
                peer or "-",
            )
            self.sink.record(
                AuditEvent(
                    "anomaly",
                    principal=principal,
                    transport=transport or "none",
                    peer=peer,
                    tool=tool,
                    namespace=namespace,
                    outcome="alert",
                    reason=alert.reason,
                ),
            )

    def _call(self, principal: Principal, tool: str | None, now: float, window: int) -> Sequence[Alert]:
        cfg = self.cfg
        key = (principal.issuer, principal.subject, principal.agent)  # per agent (the guard caps a principal's names)
        state = self.principals.get(key)
        if state is None:
            state = PrincipalState(first_seen=now)
            self.principals.put(key, state)
        state.rate.hit(window, cfg.alpha)
        if tool in state.tools and state.rate.count < cfg.burst_min:
            return _NONE  # the common case: a known tool, a window below any threshold
        found: list[Alert] = []
        if state.rate.over(cfg.burst_min, cfg.burst_factor, RATE_WARMUP_WINDOWS):
            found.append(
                Alert(
                    "burst", f"burst: {state.rate.count} calls in {cfg.window_s:g}s, baseline {state.rate.baseline:.1f}"
                )
            )
        if tool is not None and tool not in state.tools:
            known = bool(state.tools)  # a principal's very first tool is never "new"
            if len(state.tools) < 256:  # tool names are the registered table's; a bound all the same
                state.tools.add(tool)
            if cfg.new_tool and known and now - state.first_seen >= cfg.warmup_s:
                found.append(Alert("new_tool", f"new_tool: {tool[:64]} first used after {now - state.first_seen:.0f}s"))
        return found

    def _auth_failure(self, address: str, window: int) -> Sequence[Alert]:
        cfg = self.cfg
        state = self.addresses.get(address)
        if state is None:
            state = Baseline()
            self.addresses.put(address, state)
        state.hit(window, cfg.alpha)
        if state.over(cfg.auth_failure_min, cfg.auth_failure_factor, 0):
            return [
                Alert(
                    "auth_failures", f"auth_failures: {state.count} in {cfg.window_s:g}s, baseline {state.baseline:.1f}"
                )
            ]
        return _NONE
