"""The dashboard's audit boundary: security events grouped with their counts, and principal -> tool traffic.

Records are read incrementally from the deployment's audit stream (or, when the audit goes to a JSONL file
only, from that file): the first look reads the newest ``window`` records, later looks everything stored
since, in chunks of at most :data:`READ_MAX` per refresh, so no record is skipped and the counts are true
totals since the dashboard started reading. Security events that are identical apart from their time are
one row (see :data:`GROUP_FIELDS`). Records hold no secrets by construction (the audit keeps an API key's
id, never the key); they are shown as data.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import api_prefix
from nats_mcp.config.security import AuditSettings
from nats_mcp.coord.context import owner_key
from nats_mcp.core.lru import LruTable
from nats_mcp.security.audit.store import read_range, stream_info

SECURITY_KINDS = frozenset({"auth_failure", "denied", "rate_limited", "locked_out", "limit_exceeded", "anomaly"})
GROUP_FIELDS = ("kind", "outcome", "reason", "principal", "tool", "peer", "transport")
"""What makes two security events "the same" (one row): everything the page shows but the time — what
happened (kind, outcome, reason), who (principal and its key id), to which tool, from which address and
door. A client retrying a wrong key 300 times is one row counted 300; another address or key is its own row."""
FILE_TAIL_BYTES = 1 << 20
READ_MAX = 20_000
"""Audit records read per refresh at most; more stay for the next refresh (a flood is caught up, not skipped)."""
MAX_PRINCIPALS = 10_000
Source = Literal["stream", "file", "off"]
AgentsOf = Callable[[str], list[str]]
"""The handles of the agents an owner key (a principal's :func:`owner_key`) runs."""


@dataclass(frozen=True)
class Call:
    principal: str
    owner: str | None
    tool: str
    ok: bool


@dataclass
class EventGroup:
    """Security events identical in :data:`GROUP_FIELDS`: how many, and the first and last time seen."""

    fields: dict[str, Any]
    owner: str | None
    count: int
    first: str
    last: str


def _who(record: dict[str, Any]) -> str:
    principal = record.get("principal")
    if not isinstance(principal, dict):
        return "(unauthenticated)"
    subject = str(principal.get("subject") or "?")
    key_id = principal.get("key_id")
    return f"{subject} [key {key_id}]" if key_id and str(key_id) not in subject else subject


def _owner(record: dict[str, Any]) -> str | None:
    """The owner key of the record's principal: what its agents' registry entries carry (binding.caller_for)."""
    principal = record.get("principal")
    if not isinstance(principal, dict) or not principal.get("subject"):
        return None
    return owner_key(str(principal["subject"]), str(principal.get("issuer") or ""))


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
    """Security event groups and the newest tool calls; :meth:`refresh` reads what was stored since last time."""

    def __init__(
        self, conn: NatsConnection | None, file: Path | None, *, events: int, window: int, namespace: str | None = None
    ) -> None:
        self._conn = conn
        self._namespace = namespace
        self._file = file
        self.source: Source = "stream" if conn is not None else "file" if file is not None else "off"
        self.groups: OrderedDict[tuple[Any, ...], EventGroup] = OrderedDict()
        """The ``events`` most recently seen groups, least recently seen first."""
        self._max_groups = events
        self.total = 0
        """Security events read, all of them (also those of groups dropped to keep ``events`` rows)."""
        self.calls: deque[Call] = deque(maxlen=window)
        self.principals: LruTable[str, str] = LruTable(MAX_PRINCIPALS)
        """Owner key -> how the page names that principal (for an agent's "via")."""
        self._window = window
        self._after: int | None = None  # stream: last sequence read (None: not looked yet)
        self._offset: int | None = None  # file: bytes read so far
        self.note = ""

    def absorb(self, record: dict[str, Any]) -> None:
        # The audit is deployment-wide: keep this namespace's records and those made before a namespace was known
        # (a refused login, a rate limit at the door), not other namespaces' calls.
        if self._namespace is not None and record.get("namespace") not in (None, self._namespace):
            return
        kind = record.get("kind")
        owner = _owner(record)
        if owner is not None:
            self.principals.put(owner, _who(record))
        if kind in SECURITY_KINDS:
            self._count(security_event(record), owner)
        elif kind == "tool_call" and record.get("tool"):
            self.calls.append(Call(_who(record), owner, str(record["tool"]), record.get("outcome") == "ok"))

    def _count(self, event: dict[str, Any], owner: str | None) -> None:
        self.total += 1
        key = (*(event[f] for f in GROUP_FIELDS), owner)  # owner: two issuers' same subject are two principals
        at = str(event["time"] or "")
        group = self.groups.pop(key, None)
        if group is None:
            group = EventGroup({f: event[f] for f in GROUP_FIELDS}, owner, 0, at, at)
        group.count += 1
        group.first, group.last = min(group.first, at), max(group.last, at)  # ISO times: text order is time order
        self.groups[key] = group
        while len(self.groups) > self._max_groups:
            self.groups.popitem(last=False)

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
            self._after = 0  # all it will hold is new: read it from its start
            return
        self.note = ""
        first, last = info.state.first_seq, info.state.last_seq
        # The first look reads the newest records only, not the whole history at once.
        start = max(last - self._window + 1, first, 1) if self._after is None else max(self._after + 1, first)
        end = min(last, start + READ_MAX - 1)
        if start <= end:
            prefix = api_prefix(self._conn.settings.nats.jetstream_domain)
            async for msg in read_range(self._conn.client, start, end, prefix=prefix):
                self._absorb_raw(msg.data)
                self._after = msg.seq  # kept per record: a read failing halfway counts nothing twice
        self._after = max(self._after or 0, end)
        if end < last:
            self.note = f"catching up with the audit: {last - end} records not read yet"

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

    def traffic(self, top: int = 40, agents_of: AgentsOf | None = None) -> dict[str, Any]:
        """Calls per (principal, tool) among the newest tool calls, the busiest first, each with the handles of the
        agents that principal runs (the audit names the credential, people know the agent)."""
        calls: Counter[tuple[str, str]] = Counter()
        errors: Counter[tuple[str, str]] = Counter()
        owners: dict[str, str | None] = {}
        for call in self.calls:
            calls[(call.principal, call.tool)] += 1
            owners[call.principal] = call.owner
            if not call.ok:
                errors[(call.principal, call.tool)] += 1
        edges = [
            {
                "principal": p,
                "agents": _agents(agents_of, owners.get(p)),
                "tool": t,
                "calls": n,
                "errors": errors[(p, t)],
            }
            for (p, t), n in calls.most_common(top)
        ]
        return {"window": len(self.calls), "edges": edges}

    def security(self, agents_of: AgentsOf | None = None) -> dict[str, Any]:
        """The groups, the most recently seen first: each one row with its count, first and last time."""
        rows = [
            {
                **g.fields,
                "agents": _agents(agents_of, g.owner),
                "count": g.count,
                "firstSeen": g.first,
                "lastSeen": g.last,
                "time": g.last,
            }
            for g in reversed(self.groups.values())
        ]
        return {"source": self.source, "note": self.note, "total": self.total, "events": rows}

    def via(self, owner: str) -> str | None:
        """How the page names the principal with this owner key, if one of its records was read."""
        return self.principals.get(owner)


def _agents(agents_of: AgentsOf | None, owner: str | None) -> list[str]:
    return agents_of(owner) if agents_of is not None and owner is not None else []


def audit_source(audit: AuditSettings, conn: NatsConnection) -> tuple[NatsConnection | None, Path | None]:
    """Where the page reads the audit from: the stream if it is written, else the file, else nowhere."""
    if not audit.enabled:
        return None, None
    if audit.stream:
        return conn, None
    return None, audit.file
