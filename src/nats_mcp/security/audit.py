"""The audit boundary: what one audit record holds, how records are chained by hash and verified, and the writer
(:class:`AuditLog`) the guard hands every tool call and security event to.

A record says who (issuer, subject, method, API key id — never a token or key), over what (transport, peer),
did what (tool, namespace, a SHA-256 digest of the arguments — never the arguments, never message bodies),
with what outcome and latency, or which security event happened and why. Each server process writes its own
chain (a random chain id at start, so processes never contend): ``seq`` counts from 1, ``prev`` is the previous
record's ``hash`` (64 zeros for the first), and ``hash`` is the SHA-256 of the canonical JSON of every other
field. Canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)`` encoded as UTF-8; a stored record is the canonical JSON of all its fields, hash included.

:func:`verify` detects, per chain, an altered record (its hash no longer recomputes), a removed, repeated or
reordered record (``seq`` not consecutive from 1, ``prev`` not the previous hash) and records appended after a
chain's clean end. Limits of a hash chain without a secret key, and what covers them:

* Removing the *last* records of a chain leaves a shorter valid chain. A cleanly stopped writer ends its chain
  with a ``chain_end`` record, so a chain without one is reported as *open* (its process still runs, crashed —
  or its tail was cut). A live writer notices: its next write expects the stream's last sequence of its
  subject and fails, and it continues in a new chain whose first record (``chain_conflict``) names the old
  chain and the last sequence it had stored, which the stream verifier then checks. An *anchor* — a chain's
  ``(seq, hash)`` kept elsewhere, e.g. the line the writer logs when it closes — catches the rest.
* Someone able to rewrite a whole chain from some record on, recomputing every hash, is caught only by an
  anchor past that record. The stream refuses message deletes and purges (``deny_delete``, ``deny_purge``), so
  this needs the rights to delete and recreate the audit stream itself.
* ``args_digest`` hides arguments only as well as they resist guessing: anyone holding candidate arguments can
  confirm them against the digest (that is its purpose); low-entropy arguments can be found by trying.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import re
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from nats_mcp.aiotasks import stop_task
from nats_mcp.redact import redact
from nats_mcp.security.principal import Principal

if TYPE_CHECKING:
    from nats_mcp.bus.connection import NatsConnection
    from nats_mcp.config_security import AuditSettings

log = logging.getLogger("nats_mcp.security.audit")

FORMAT_VERSION: Final = 1
GENESIS: Final = "0" * 64
"""``prev`` of the first record of a chain."""

Transport = Literal["stdio", "http", "grpc"]

KINDS: Final = frozenset(
    {
        "tool_call",
        "auth_failure",
        "denied",
        "rate_limited",
        "locked_out",
        "limit_exceeded",
        # written by the audit log itself:
        "records_dropped",
        "chain_conflict",
        "chain_end",
    }
)
"""Kinds in use; any lowercase identifier is accepted (the set is documentation, not a gate)."""

DEFAULT_MAX_PENDING: Final = 10_000
DEFAULT_BATCH: Final = 256

_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TOOL = re.compile(r"^(?!nmk_)[a-z][a-z0-9_]{0,63}$")
"""Tool names as this server makes them (``warp_send_message``), never shaped like an API key (``nmk_...``)."""
_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_CHAIN = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN = re.compile(r"[A-Za-z0-9_.:/+\[\]-]*")


# --------------------------------------------------------------------------------------------------
# Canonical form and digests


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_PRESORTED = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""For dicts built with their keys already in sorted order (the hot path of sealing); same output as canonical."""
_ARGUMENTS = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
"""allow_nan stays on, and anything JSON cannot express is digested by its ``str``: a digest never fails a call."""


def canonical_json(value: Any) -> bytes:
    """The one serialization that is hashed: sorted keys, no whitespace, UTF-8, no NaN or infinity."""
    return _CANONICAL.encode(value).encode()


def digest_arguments(args: Mapping[str, Any] | None) -> str:
    """SHA-256 (hex) of the canonical JSON of a call's arguments: lets anyone holding the arguments prove which call
    they were, without the audit ever holding them."""
    value = args if isinstance(args, dict) else dict(args or {})
    return hashlib.sha256(_ARGUMENTS.encode(value).encode()).hexdigest()


def record_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a record's fields other than ``hash``."""
    return hashlib.sha256(canonical_json({k: v for k, v in body.items() if k != "hash"})).hexdigest()


def new_chain_id() -> str:
    """A random chain id (32 lowercase hex characters, usable as a subject token)."""
    return uuid.uuid4().hex


_second: tuple[int, str] = (-1, "")


def _now() -> str:
    """UTC now as ``2026-01-02T03:04:05.678Z`` (the formatted second is reused: this runs on every call)."""
    global _second
    now = time.time()
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


def _text(value: str | None, limit: int) -> str | None:
    """Text from the server's side (reasons, subjects, codes): bounded, single-line, secrets masked. Short plain
    values (codes, addresses, names) skip the redaction regexes: every secret shape they know is longer."""
    if value is None:
        return None
    if len(value) <= 40 and _PLAIN.fullmatch(value):
        return value[:limit]
    return redact(_CONTROL.sub(" ", value[: limit * 2]))[:limit]


def _token(value: str | None, pattern: re.Pattern[str]) -> str | None:
    """A name the caller chose (tool, namespace): kept when well-formed, else only its digest is kept, so no
    caller-chosen text of any shape (a pasted secret, a forged log line) reaches the audit."""
    if value is None or pattern.fullmatch(value):
        return value
    return "invalid:" + hashlib.sha256(value.encode(errors="replace")).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class AuditPrincipal:
    """Who acted, as the audit keeps it: never a token or a key (an API key's id is fine)."""

    issuer: str
    subject: str
    method: str
    key_id: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> AuditPrincipal:
        return cls(
            issuer=_text(principal.issuer, 256) or "",
            subject=_text(principal.subject, 256) or "",
            method=principal.method,
            key_id=_text(principal.key_id, 64),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "key_id": self.key_id, "method": self.method, "subject": self.subject}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One sealed audit record (see the module docstring for the chain and the canonical form)."""

    time: str
    """UTC, ISO 8601 with milliseconds (``2026-01-02T03:04:05.678Z``)."""
    kind: str
    principal: AuditPrincipal | None
    transport: str
    peer: str | None
    tool: str | None
    namespace: str | None
    outcome: str
    """``ok`` or an error code."""
    latency_ms: float | None
    args_digest: str | None
    reason: str | None
    """For security events: why (short)."""
    count: int | None
    """How many events this record stands for (``records_dropped``: how many were lost)."""
    ref: str | None
    """``chain_conflict``: ``<chain>:<seq>``, the chain this one continues and the last record stored in it."""
    chain: str
    seq: int
    prev: str
    hash: str
    v: int = FORMAT_VERSION

    def body(self) -> dict[str, Any]:
        """Every field but ``hash``: what the hash is computed over (keys in sorted order)."""
        return _body(self.args_digest, self.chain, self.count, self.kind, self.latency_ms, self.namespace,
                     self.outcome, self.peer, self.prev, self.principal, self.reason, self.ref, self.seq, self.time,
                     self.tool, self.transport, self.v)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}

    def to_json(self) -> bytes:
        """The stored form: canonical JSON of every field, hash included."""
        return canonical_json(self.to_dict())


class _Chain:
    """The head of this process's chain: seals records one after another (synchronous, no I/O)."""

    def __init__(self, chain: str | None = None) -> None:
        self.id = chain or new_chain_id()
        if not _CHAIN.fullmatch(self.id):
            raise ValueError("a chain id is 32 lowercase hexadecimal characters")
        self.seq = 0
        self.head = GENESIS

    def seal(self, fields: Mapping[str, Any]) -> AuditRecord:
        f, seq = fields, self.seq + 1
        body = _body(f["args_digest"], self.id, f["count"], f["kind"], f["latency_ms"], f["namespace"], f["outcome"],
                     f["peer"], self.head, f["principal"], f["reason"], f["ref"], seq, f["time"], f["tool"],
                     f["transport"], FORMAT_VERSION)  # fmt: skip
        digest = hashlib.sha256(_PRESORTED.encode(body).encode()).hexdigest()
        record = AuditRecord(**fields, chain=self.id, seq=seq, prev=self.head, hash=digest)
        self.seq, self.head = seq, digest
        return record

    def reseal(self, record: AuditRecord) -> AuditRecord:
        fields = {k: v for k, v in _fields_of(record).items() if k not in ("v", "chain", "seq", "prev", "hash")}
        return self.seal(fields)


def _body(
    args_digest: str | None,
    chain: str,
    count: int | None,
    kind: str,
    latency_ms: float | None,
    namespace: str | None,
    outcome: str,
    peer: str | None,
    prev: str,
    principal: AuditPrincipal | None,
    reason: str | None,
    ref: str | None,
    seq: int,
    at: str,
    tool: str | None,
    transport: str,
    v: int,
) -> dict[str, Any]:
    """A record's fields but ``hash`` as a dict whose keys are in sorted order (so it encodes canonically)."""
    return {
        "args_digest": args_digest,
        "chain": chain,
        "count": count,
        "kind": kind,
        "latency_ms": latency_ms,
        "namespace": namespace,
        "outcome": outcome,
        "peer": peer,
        "prev": prev,
        "principal": principal.to_dict() if principal else None,
        "reason": reason,
        "ref": ref,
        "seq": seq,
        "time": at,
        "tool": tool,
        "transport": transport,
        "v": v,
    }


def _fields_of(record: AuditRecord) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


# --------------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True, slots=True)
class Problem:
    """The first bad record: in which chain, at which chain sequence, where in the input, and what is wrong."""

    chain: str | None
    seq: int | None
    where: str
    """``stream sequence 17``, ``line 5``, ``record 3`` — or ``end of input`` for a chain cut short."""
    what: str
    raw: str | None = None
    """The bad record as stored (bounded), when there is one."""

    def describe(self) -> str:
        chain = f"chain {self.chain}" if self.chain else "unknown chain"
        seq = f" seq {self.seq}" if self.seq is not None else ""
        return f"{chain}{seq} ({self.where}): {self.what}"


@dataclass(slots=True)
class ChainInfo:
    """What verification saw of one chain."""

    chain: str
    first_seq: int
    last_seq: int
    head: str
    """Hash of the last record: an anchor for later verifications."""
    records: int = 0
    first_time: str | None = None
    last_time: str | None = None
    ended: bool = False
    """The chain ends with its writer's ``chain_end`` record (a clean stop)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "records": self.records,
            "head": self.head,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "ended": self.ended,
        }


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records: int
    chains: list[ChainInfo]
    problem: Problem | None = None

    @property
    def summary(self) -> str:
        if not self.ok and self.problem:
            return f"audit chain broken: {self.problem.describe()}"
        records = f"{self.records} record{'s' if self.records != 1 else ''}"
        chains = f"{len(self.chains)} chain{'s' if len(self.chains) != 1 else ''}"
        return f"{records} in {chains} verified"

    @property
    def open_chains(self) -> list[str]:
        """Chains without a clean end: their process still runs, or crashed, or their tail was cut."""
        return [c.chain for c in self.chains if not c.ended]

    def as_dict(self) -> dict[str, Any]:
        problem = self.problem
        return {
            "ok": self.ok,
            "records": self.records,
            "chains": [c.as_dict() for c in self.chains],
            "open_chains": self.open_chains,
            "problem": None
            if problem is None
            else {
                "chain": problem.chain,
                "seq": problem.seq,
                "where": problem.where,
                "what": problem.what,
                "record": problem.raw,
            },
            "summary": self.summary,
        }


Anchor = tuple[str, int, str]
"""(chain, seq, hash): a record known from elsewhere to belong to the chain."""


def parse_anchor(text: str) -> Anchor:
    """``CHAIN:SEQ:HASH`` -> an anchor (ValueError if malformed)."""
    parts = text.strip().split(":")
    if len(parts) != 3 or not _CHAIN.fullmatch(parts[0]) or not parts[1].isdigit() or not _HEX64.fullmatch(parts[2]):
        raise ValueError(f"{text!r} is not an anchor: expected CHAIN:SEQ:HASH (32 hex : number : 64 hex)")
    return parts[0], int(parts[1]), parts[2]


class Verifier:
    """Checks records one at a time (constant memory per chain) and keeps the first problem.

    Records of a chain must come in chain order (as the stream and a JSONL file hold them); chains may interleave.
    ``allow_expired_head`` accepts a chain whose first records are gone (a stream with an age or size limit
    drops the oldest); by default a chain must start at seq 1. ``check_divergence`` (for the stream, where a
    writer's ``chain_conflict`` record speaks of) checks that the chain it names ends where its writer left it.
    """

    def __init__(
        self,
        *,
        allow_expired_head: bool = False,
        anchors: Iterable[Anchor] = (),
        check_divergence: bool = False,
    ) -> None:
        self.allow_expired_head = allow_expired_head
        self.check_divergence = check_divergence
        self.anchors: dict[tuple[str, int], str] = {(c, s): h for c, s, h in anchors}
        self.chains: dict[str, ChainInfo] = {}
        self.records = 0
        self.problem: Problem | None = None
        self._diverged: list[tuple[str, int, str, int]] = []  # (chain, last good seq, in chain, at seq)

    def fail(self, chain: str | None, seq: int | None, where: str, what: str, raw: str | None = None) -> bool:
        if self.problem is None:
            self.problem = Problem(chain, seq, where, what, raw[:4000] if raw else None)
        return False

    def add(self, item: AuditRecord | Mapping[str, Any] | bytes | str, where: str | None = None) -> bool:
        """Check the next record; False once a problem is known (later records are not looked at)."""
        if self.problem is not None:
            return False
        self.records += 1
        where = where or f"record {self.records}"
        raw: str | None
        if isinstance(item, AuditRecord):
            data: Any = item.to_dict()
            raw = item.to_json().decode()
        elif isinstance(item, bytes | str):
            raw = item.decode(errors="replace") if isinstance(item, bytes) else item
            try:
                data = json.loads(item)
            except ValueError:
                return self.fail(None, None, where, "not an audit record: not JSON", raw)
        else:
            data = dict(item)
            raw = json.dumps(data, default=str)
        if not isinstance(data, dict):
            return self.fail(None, None, where, "not an audit record: not a JSON object", raw)
        chain, seq, prev, digest = data.get("chain"), data.get("seq"), data.get("prev"), data.get("hash")
        if not isinstance(chain, str) or not _CHAIN.fullmatch(chain):
            return self.fail(None, None, where, "not an audit record: no valid chain id", raw)
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            return self.fail(chain, None, where, "not an audit record: no valid seq", raw)
        if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
            return self.fail(chain, seq, where, "not an audit record: no valid prev", raw)
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            return self.fail(chain, seq, where, "not an audit record: no valid hash", raw)
        try:
            computed = record_hash(data)
        except ValueError:
            return self.fail(chain, seq, where, "not canonical: holds a value JSON cannot express", raw)
        if computed != digest:
            return self.fail(chain, seq, where, "its hash does not match its contents: the record was altered", raw)
        info = self.chains.get(chain)
        if info is None:
            if seq != 1 and not self.allow_expired_head:
                missing = "record 1 is" if seq == 2 else f"records 1 to {seq - 1} are"
                return self.fail(chain, seq, where, f"the chain starts at seq {seq}: {missing} missing", raw)
            if seq == 1 and prev != GENESIS:
                return self.fail(chain, seq, where, "the first record of a chain must have prev = 64 zeros", raw)
            info = ChainInfo(chain, seq, seq - 1, prev)
            self.chains[chain] = info
        else:
            if info.ended:
                return self.fail(chain, seq, where, f"a record after the chain's end (seq {info.last_seq})", raw)
            if seq != info.last_seq + 1:
                if seq <= info.last_seq:
                    what = f"seq {seq} comes after seq {info.last_seq}: records repeated or out of order"
                else:
                    gap = seq - info.last_seq - 1
                    what = f"seq {seq} follows seq {info.last_seq}: {gap} record{'s' if gap > 1 else ''} missing"
                    what += " (removed, or out of order)"
                return self.fail(chain, seq, where, what, raw)
            if prev != info.head:
                return self.fail(
                    chain, seq, where, f"its prev is not the hash of seq {info.last_seq}: the chain was altered", raw
                )
        anchored = self.anchors.get((chain, seq))
        if anchored is not None and anchored != digest:
            return self.fail(chain, seq, where, "its hash differs from the anchor given for this seq", raw)
        info.last_seq, info.head = seq, digest
        info.records += 1
        stamp = data.get("time") if isinstance(data.get("time"), str) else None
        info.first_time = info.first_time or stamp
        info.last_time = stamp or info.last_time
        kind = data.get("kind")
        if kind == "chain_end":
            info.ended = True
        elif kind == "chain_conflict" and isinstance(data.get("ref"), str):
            old, _, last = str(data["ref"]).partition(":")
            if _CHAIN.fullmatch(old) and last.isdigit():
                self._diverged.append((old, int(last), chain, seq))
        return True

    def result(self) -> VerifyResult:
        """The verdict over everything added (the end-of-input checks: anchors, diverged chains)."""
        if self.problem is None:
            self._check_ends()
        return VerifyResult(self.problem is None, self.records, list(self.chains.values()), self.problem)

    def _check_ends(self) -> None:
        for (chain, seq), _digest in self.anchors.items():
            info = self.chains.get(chain)
            last = info.last_seq if info else 0
            if last < seq:
                what = f"the chain ends at seq {last}, before the anchored seq {seq}: its last records were removed"
                self.fail(chain, last + 1, "end of input", what)
                return
        if not self.check_divergence:
            return
        for chain, good, new_chain, at in self._diverged:
            info = self.chains.get(chain)
            last = info.last_seq if info else 0
            where = f"end of input (chain {new_chain} seq {at} records that its writer had stored up to seq {good})"
            if last > good:
                self.fail(chain, good + 1, where, "written by someone other than the chain's writer")
                return
            if last < good and not (info is None and self.allow_expired_head):
                self.fail(chain, last + 1, where, f"the chain ends at seq {last}: its last records were removed")
                return


def verify(
    records: Iterable[AuditRecord | Mapping[str, Any] | bytes | str],
    *,
    allow_expired_head: bool = False,
    anchors: Iterable[Anchor] = (),
) -> VerifyResult:
    """Verify records in stored order (chains may interleave): hashes, prev links, seq from 1 without gaps."""
    verifier = Verifier(allow_expired_head=allow_expired_head, anchors=anchors)
    for item in records:
        if not verifier.add(item):
            break
    return verifier.result()


# --------------------------------------------------------------------------------------------------
# The writer


class ChainDivergedError(Exception):
    """The store's copy of the chain is not what this writer wrote (someone else wrote to it, or removed from it).

    ``written``: how many records of the batch were stored before the one that could not be.
    """

    def __init__(self, written: int, detail: str) -> None:
        super().__init__(detail)
        self.written = written
        self.detail = detail


class AuditSink(Protocol):
    """Where sealed records are written, in order, by one background task per sink."""

    name: str

    async def write(self, batch: Sequence[AuditRecord]) -> int:
        """Store the records in order; return how many (from the start of the batch) are now stored. Fewer than
        all means the next one failed (the sink logs why); it is offered again later. Raise
        :class:`ChainDivergedError` when the store's chain is not this writer's."""
        ...

    async def wait_ready(self, timeout: float) -> None:
        """Return when a retry is worth it (e.g. NATS is back), at the latest after ``timeout`` seconds."""
        ...

    async def close(self) -> None: ...


@dataclass(eq=False)
class _SinkState:
    sink: AuditSink
    offset: int
    """Absolute index of the next record this sink writes."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    written: int = 0
    failing: bool = False


class AuditLog:
    """The audit writer: :meth:`record` seals a record at once (hashing only, no I/O, never blocks) and queues it;
    one background task per sink writes the queue in order.

    The queue is bounded (``max_pending`` records not yet written by every sink) and never applies backpressure:
    a full queue means a sink has been failing for a while (NATS down), and making tool calls wait on it would
    let an outage — or a flood of failed logins — stall every caller. Instead, beyond the bound new records are
    dropped *before* they are sealed (so the chain stays whole), counted, logged, and as soon as there is room a
    ``records_dropped`` record carrying the count is sealed into the chain: the loss itself is audited. Records
    within the bound wait, in order, for their sink to come back (reconnection wakes the stream sink at once).
    :meth:`flush` waits for the queue to drain; :meth:`close` seals a ``chain_end`` record, drains (up to its
    timeout — what is still queued then is lost, and logged) and logs the chain's head as an anchor.
    """

    def __init__(
        self,
        sinks: Sequence[AuditSink] = (),
        *,
        transport: Transport = "stdio",
        max_pending: int = DEFAULT_MAX_PENDING,
        batch_size: int = DEFAULT_BATCH,
        chain: str | None = None,
        enabled: bool = True,
    ) -> None:
        if max_pending < 2 or batch_size < 1:
            raise ValueError("max_pending must be at least 2 and batch_size at least 1")
        self.enabled = enabled and bool(sinks)
        self.transport: str = transport
        self.max_pending = max_pending
        self.batch_size = batch_size
        self._chain = _Chain(chain)
        self._pending: deque[AuditRecord] = deque()
        self._base = 0  # absolute index of _pending[0]
        self._sinks = [_SinkState(sink, 0) for sink in sinks]
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._started = False
        self._closing = False
        self.recorded = 0
        self.dropped_total = 0
        self._dropped = 0  # since the last records_dropped record
        self._last_principal: tuple[Principal, AuditPrincipal] | None = None

    @classmethod
    def from_settings(
        cls, settings: AuditSettings, conn: NatsConnection | None, *, transport: Transport = "stdio", **options: Any
    ) -> AuditLog:
        """The audit log the settings ask for: the stream sink (needs ``conn``) and/or the JSONL file sink.
        With ``enabled`` off, or no sink, :meth:`record` does nothing."""
        from nats_mcp.security.audit_store import FileSink, StreamSink

        sinks: list[AuditSink] = []
        if settings.enabled and settings.stream and conn is not None:
            sinks.append(StreamSink(conn))
        if settings.enabled and settings.file is not None:
            sinks.append(FileSink(settings.file))
        return cls(sinks, transport=transport, enabled=settings.enabled, **options)

    # -- recording (synchronous, cheap) ------------------------------------------------------------

    @property
    def chain(self) -> str:
        """The id of the chain records are being sealed into now."""
        return self._chain.id

    @property
    def head(self) -> Anchor:
        """(chain, seq, hash) of the last sealed record: an anchor."""
        return self._chain.id, self._chain.seq, self._chain.head

    def record(
        self,
        kind: str,
        *,
        principal: Principal | None = None,
        transport: str | None = None,
        peer: str | None = None,
        tool: str | None = None,
        namespace: str | None = None,
        outcome: str = "ok",
        latency_ms: float | None = None,
        arguments: Mapping[str, Any] | None = None,
        args_digest: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Audit one tool call or security event (see :meth:`append`, which also returns the sealed record)."""
        self.append(kind, principal=principal, transport=transport, peer=peer, tool=tool, namespace=namespace,
                    outcome=outcome, latency_ms=latency_ms, arguments=arguments, args_digest=args_digest,
                    reason=reason)  # fmt: skip

    def append(
        self,
        kind: str,
        *,
        principal: Principal | None = None,
        transport: str | None = None,
        peer: str | None = None,
        tool: str | None = None,
        namespace: str | None = None,
        outcome: str = "ok",
        latency_ms: float | None = None,
        arguments: Mapping[str, Any] | None = None,
        args_digest: str | None = None,
        reason: str | None = None,
    ) -> AuditRecord | None:
        """Seal and queue one record; returns it, or None when auditing is off or the record was dropped.
        Call it from the event loop's thread (it wakes the writers).

        ``arguments`` are digested here and never kept (or pass ``args_digest`` from :func:`digest_arguments`).
        ``peer`` defaults to the principal's; ``transport`` to the log's. Never raises for data (bad kinds do).
        """
        if not _KIND.fullmatch(kind):
            raise ValueError(f"invalid audit kind {kind!r}")
        if not self.enabled:
            return None
        if self._closing:
            log.warning("audit record %s after the audit log was closed: not recorded", kind)
            return None
        room = self.max_pending - len(self._pending)
        if room < (2 if self._dropped else 1):
            self._drop()
            return None
        if self._dropped:
            self._seal_dropped()
        if arguments is not None and args_digest is None:
            args_digest = digest_arguments(arguments)
        fields = {
            "time": _now(),
            "kind": kind,
            "principal": self._principal(principal),
            "transport": _text(transport or self.transport, 16),
            "peer": _text(peer if peer is not None else (principal.peer if principal else None), 64),
            "tool": _token(tool, _TOOL),
            "namespace": _token(namespace, _NAMESPACE),
            "outcome": _text(outcome, 64) or "",
            "latency_ms": round(latency_ms, 3) if latency_ms is not None and math.isfinite(latency_ms) else None,
            "args_digest": args_digest if args_digest is None or _HEX64.fullmatch(args_digest) else None,
            "reason": _text(reason, 200),
            "count": None,
            "ref": None,
        }
        return self._queue(self._chain.seal(fields))

    def _principal(self, principal: Principal | None) -> AuditPrincipal | None:
        if principal is None:
            return None
        last = self._last_principal
        if last is not None and last[0] is principal:
            return last[1]  # a stdio process, or one session: the same principal on every call
        who = AuditPrincipal.of(principal)
        self._last_principal = (principal, who)
        return who

    def _own(self, kind: str, *, outcome: str, reason: str | None = None, count: int | None = None,
             ref: str | None = None) -> AuditRecord:  # fmt: skip
        fields = {"time": _now(), "kind": kind, "principal": None, "transport": self.transport, "peer": None,
                  "tool": None, "namespace": None, "outcome": outcome, "latency_ms": None, "args_digest": None,
                  "reason": reason, "count": count, "ref": ref}  # fmt: skip
        return self._chain.seal(fields)

    def _drop(self) -> None:
        if not self._dropped:
            log.error(
                "audit queue full (%d records not yet written: is NATS down?); dropping records until it drains "
                "(the count will be audited)",
                len(self._pending),
            )
        self._dropped += 1
        self.dropped_total += 1

    def _seal_dropped(self) -> None:
        count, self._dropped = self._dropped, 0
        log.error("audit: %d records were dropped while the queue was full", count)
        self._queue(self._own("records_dropped", outcome="dropped", reason="queue_full", count=count))

    def _queue(self, record: AuditRecord) -> AuditRecord:
        self._pending.append(record)
        self.recorded += 1
        if not self._started:
            self._start_soon()
        for st in self._sinks:
            st.wake.set()
        return record

    # -- background writing ----------------------------------------------------------------------

    def _start_soon(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: start() or the first record inside one starts the writers
        self.start()

    def start(self) -> None:
        """Start the sink writers (also done by the first record made inside the event loop)."""
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        for st in self._sinks:
            st.task = loop.create_task(self._drain(st), name=f"audit-{st.sink.name}")

    async def _drain(self, st: _SinkState) -> None:
        attempt = 0
        while True:
            start = st.offset - self._base
            if start >= len(self._pending):
                if self._closing:
                    return
                st.wake.clear()
                await st.wake.wait()
                continue
            batch = list(itertools.islice(self._pending, start, start + self.batch_size))
            try:
                written = await st.sink.write(batch)
            except ChainDivergedError as exc:
                self._advance(st, exc.written)
                self._rechain(st.offset, exc.detail)
                continue
            except Exception:
                log.exception("audit sink %s failed", st.sink.name)
                written = 0
            self._advance(st, written)
            if written >= len(batch):
                if st.failing:
                    log.warning("audit sink %s is writing again", st.sink.name)
                st.failing, attempt = False, 0
                continue
            st.failing = True
            attempt += 1
            await st.sink.wait_ready(min(0.05 * 2**attempt, 5.0))

    def _advance(self, st: _SinkState, written: int) -> None:
        if written <= 0:
            return
        st.offset += written
        st.written += written
        low = min(s.offset for s in self._sinks)
        while self._base < low:
            self._pending.popleft()
            self._base += 1
        if self._waiters:
            still = []
            for target, fut in self._waiters:
                if low >= target:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((target, fut))
            self._waiters = still

    def _rechain(self, index: int, detail: str) -> None:
        """The stream's copy of the chain diverged at absolute ``index``: continue in a new chain, whose first
        record names the old chain and its last stored seq; every record from ``index`` on is sealed again."""
        start = index - self._base
        tail = list(itertools.islice(self._pending, start, None))
        old = tail[0].chain if tail else self._chain.id
        good = tail[0].seq - 1 if tail else self._chain.seq
        for _ in tail:
            self._pending.pop()
        self._chain = _Chain()
        log.error("audit chain %s diverged in the stream after seq %d (%s); continuing in chain %s",
                  old, good, detail, self._chain.id)  # fmt: skip
        marker = self._own(
            "chain_conflict", outcome="rechained", reason="stream_diverged", count=len(tail), ref=f"{old}:{good}"
        )
        self._pending.append(marker)
        self._pending.extend(self._chain.reseal(r) for r in tail)
        self.recorded += 1
        for st in self._sinks:
            st.offset = min(st.offset, index)
            st.wake.set()

    # -- draining, closing -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records not yet written by every sink."""
        return len(self._pending)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record sealed so far is written by every sink; False if ``timeout`` passed first."""
        target = self._base + len(self._pending)
        if not self._sinks or min(s.offset for s in self._sinks) >= target:
            return True
        self.start()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 10.0) -> None:
        """Seal ``chain_end``, drain for up to ``timeout`` seconds, stop the writers, close the sinks."""
        if self._closing:
            return
        if self.enabled and self._chain.seq > 0:
            if self._dropped:
                self._seal_dropped()
            self._queue(self._own("chain_end", outcome="ok", reason="shutdown"))
        self._closing = True
        if not await self.flush(timeout):
            log.error("audit: %d records could not be written before shutdown and are lost", len(self._pending))
        for st in self._sinks:
            await stop_task(st.task)
            try:
                await st.sink.close()
            except Exception:
                log.exception("closing audit sink %s failed", st.sink.name)
        if self.enabled and self._chain.seq > 0:
            chain, seq, digest = self.head
            log.info("audit chain %s closed at seq %d; anchor %s:%d:%s", chain, seq, chain, seq, digest)

    def stats(self) -> dict[str, Any]:
        """A snapshot for health checks and metrics."""
        return {
            "enabled": self.enabled,
            "chain": self._chain.id,
            "seq": self._chain.seq,
            "recorded": self.recorded,
            "pending": len(self._pending),
            "dropped": self.dropped_total,
            "sinks": {st.sink.name: {"written": st.written, "failing": st.failing} for st in self._sinks},
        }
