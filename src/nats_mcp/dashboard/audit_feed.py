"""The dashboard's audit boundary: recent security events and principal -> tool traffic, read from the audit log.

Records are read incrementally (only those stored since the last look, at most ``window`` at a time) from
the deployment's audit stream, or, when the audit goes to a JSONL file only, from that file's tail. Records
hold no secrets by construction (the audit keeps an API key's id, never the key); they are shown as data.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import api_prefix
from nats_mcp.config_security import AuditSettings
from nats_mcp.security.audit_store import read_range, stream_info

SECURITY_KINDS = frozenset({"auth_failure", "denied", "rate_limited", "locked_out", "limit_exceeded", "anomaly"})
FILE_TAIL_BYTES = 1 << 20
Source = Literal["stream", "file", "off"]


@dataclass(frozen=True)
class Call:
    principal: str
    tool: str
    ok: bool


def _who(record: dict[str, Any]) -> str:
    principal = record.get("principal")
    if not isinstance(principal, dict):
        return "(unauthenticated)"
    subject = str(principal.get("subject") or "?")
    key_id = principal.get("key_id")
    return f"{subject} [key {key_id}]" if key_id and str(key_id) not in subject else subject


def security_event(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a security record the page shows (all plain text, escaped by the page)."""
    return {
        "time": record.get("time"),
        "kind": record.get("kind"),
        "principal": _who(record) if record.get("principal") else None,
        "peer": record.get("peer"),
        "transport": record.get("transport"),
        "tool": record.get("tool"),
        "outcome": record.get("outcome"),
        "reason": record.get("reason"),
    }


class AuditFeed:
    """Keeps the newest security events and tool calls; :meth:`refresh` reads what was stored since last time."""

    def __init__(
        self, conn: NatsConnection | None, file: Path | None, *, events: int, window: int, namespace: str | None = None
    ) -> None:
        self._conn = conn
        self._namespace = namespace
        self._file = file
        self.source: Source = "stream" if conn is not None else "file" if file is not None else "off"
        self.events: deque[dict[str, Any]] = deque(maxlen=events)
        self.calls: deque[Call] = deque(maxlen=window)
        self._window = window
        self._after = 0  # stream: last sequence read
        self._offset: int | None = None  # file: bytes read so far
        self.note = ""

    def absorb(self, record: dict[str, Any]) -> None:
        # The audit is deployment-wide: keep this namespace's records and those made before a namespace was known
        # (a refused login, a rate limit at the door), not other namespaces' calls.
        if self._namespace is not None and record.get("namespace") not in (None, self._namespace):
            return
        kind = record.get("kind")
        if kind in SECURITY_KINDS:
            self.events.append(security_event(record))
        elif kind == "tool_call" and record.get("tool"):
            self.calls.append(Call(_who(record), str(record["tool"]), record.get("outcome") == "ok"))

    async def refresh(self) -> None:
        if self.source == "stream":
            await self._from_stream()
        elif self.source == "file":
            self._from_file()
        else:
            self.note = "auditing is off (security.audit): no security events or traffic to show"

    async def _from_stream(self) -> None:
        assert self._conn is not None
        info = await stream_info(self._conn)
        if info is None:
            self.note = "no audit stream yet: nothing has been audited on this NATS"
            return
        self.note = ""
        last = info.state.last_seq
        start = max(self._after + 1, last - self._window + 1, info.state.first_seq)
        if start > last:
            return
        prefix = api_prefix(self._conn.settings.nats.jetstream_domain)
        async for msg in read_range(self._conn.client, start, last, prefix=prefix):
            self._absorb_raw(msg.data)
            self._after = msg.seq
        self._after = max(self._after, last)

    def _from_file(self) -> None:
        assert self._file is not None
        path = self._file.expanduser()
        self.note = f"audit read from the file {path.name} (the audit stream is off)"
        try:
            size = path.stat().st_size
            with path.open("rb") as fh:
                if self._offset is None or size < self._offset:  # first look, or the file was replaced
                    self._offset = max(0, size - FILE_TAIL_BYTES)
                fh.seek(self._offset)
                data = fh.read(max(0, min(size - self._offset, FILE_TAIL_BYTES)))
        except OSError as exc:
            self.note = f"cannot read the audit file: {exc.strerror or exc}"
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        chunk, self._offset = data[: end + 1], self._offset + end + 1
        for line in chunk.split(b"\n"):
            if line.strip():
                self._absorb_raw(line)

    def _absorb_raw(self, raw: bytes) -> None:
        try:
            record = json.loads(raw)
        except ValueError:
            return
        if isinstance(record, dict):
            self.absorb(record)

    def traffic(self, top: int = 40) -> dict[str, Any]:
        """Calls per (principal, tool) among the newest tool calls, the busiest first."""
        calls: Counter[tuple[str, str]] = Counter()
        errors: Counter[tuple[str, str]] = Counter()
        for call in self.calls:
            calls[(call.principal, call.tool)] += 1
            if not call.ok:
                errors[(call.principal, call.tool)] += 1
        edges = [
            {"principal": p, "tool": t, "calls": n, "errors": errors[(p, t)]} for (p, t), n in calls.most_common(top)
        ]
        return {"window": len(self.calls), "edges": edges}

    def security(self) -> dict[str, Any]:
        return {"source": self.source, "note": self.note, "events": list(reversed(self.events))}


def audit_source(audit: AuditSettings, conn: NatsConnection) -> tuple[NatsConnection | None, Path | None]:
    """Where the page reads the audit from: the stream if it is written, else the file, else nowhere."""
    if not audit.enabled:
        return None, None
    if audit.stream:
        return conn, None
    return None, audit.file
