"""The audit-record boundary: what one audit record holds, its canonical form, and how records are sealed into a chain.

A record says who (issuer, subject, method, API key id — never a token or key), over what (transport, peer),
did what (tool, namespace, a SHA-256 digest of the arguments — never the arguments, never message bodies),
with what outcome and latency, or which security event happened and why. Each server process writes its own
chain (a random chain id at start, so processes never contend): ``seq`` counts from 1, ``prev`` is the previous
record's ``hash`` (64 zeros for the first), and ``hash`` is the SHA-256 of the canonical JSON of every other
field. Canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)`` encoded as UTF-8; a stored record is the canonical JSON of all its fields, hash included.
Verifying chains is :mod:`nats_mcp.security.audit.chain`'s part.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from nats_mcp.core.redact import redact
from nats_mcp.security.principal import Principal

FORMAT_VERSION: Final = 1
GENESIS: Final = "0" * 64
"""``prev`` of the first record of a chain."""

Transport = Literal["stdio", "http", "grpc", "cli"]

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
    _stored: bytes | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    """The stored form, kept by :meth:`_Chain.seal` (which has just encoded the body): no second encoding per write."""

    def body(self) -> dict[str, Any]:
        """Every field but ``hash``: what the hash is computed over (keys in sorted order)."""
        return _body(
            self.args_digest,
            self.chain,
            self.count,
            self.kind,
            self.latency_ms,
            self.namespace,
            self.outcome,
            self.peer,
            self.prev,
            self.principal,
            self.reason,
            self.ref,
            self.seq,
            self.time,
            self.tool,
            self.transport,
            self.v,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}

    def to_json(self) -> bytes:
        """The stored form: canonical JSON of every field, hash included."""
        stored = self._stored
        return stored if stored is not None else canonical_json(self.to_dict())


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
        body = _body(
            f["args_digest"],
            self.id,
            f["count"],
            f["kind"],
            f["latency_ms"],
            f["namespace"],
            f["outcome"],
            f["peer"],
            self.head,
            f["principal"],
            f["reason"],
            f["ref"],
            seq,
            f["time"],
            f["tool"],
            f["transport"],
            FORMAT_VERSION,
        )
        encoded = _PRESORTED.encode(body)
        digest = hashlib.sha256(encoded.encode()).hexdigest()
        record = AuditRecord(**fields, chain=self.id, seq=seq, prev=self.head, hash=digest)
        # The stored form is the body with "hash" in its sorted place, before "kind": the keys before it
        # (args_digest, chain, count) hold hex, digits or null, so the first ',"kind":' is that key.
        at = encoded.index(',"kind":')
        object.__setattr__(record, "_stored", f'{encoded[:at]},"hash":"{digest}"{encoded[at:]}'.encode())
        self.seq, self.head = seq, digest
        return record

    def reseal(self, record: AuditRecord) -> AuditRecord:
        fields = {
            k: v for k, v in _fields_of(record).items() if k not in ("v", "chain", "seq", "prev", "hash", "_stored")
        }
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
