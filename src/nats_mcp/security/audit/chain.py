"""The audit-chain boundary: verifying chains of sealed records (hashes, prev links, seq from 1, clean ends).

Records, their canonical form and how they are sealed are :mod:`nats_mcp.security.audit.record`'s part.

:func:`verify` detects, per chain, an altered record (its hash no longer recomputes), a removed, repeated or
reordered record (``seq`` not consecutive from 1, ``prev`` not the previous hash) and records appended after a
chain's clean end. Limits of a hash chain without a secret key, and what covers them:

* Removing the *last* records of a chain leaves a shorter valid chain. A cleanly stopped writer ends its chain
  with a ``chain_end`` record, so a chain without one is reported as *open* (its process still runs, crashed —
  or its tail was cut; ``audit verify --closed`` fails on it). A live writer notices: its next write expects the
  stream's last sequence of its subject and fails, and it continues in a new chain whose first record
  (``chain_conflict``) names the old chain and the last sequence it had stored, which the stream verifier then
  checks. An *anchor* — a chain's
  ``(seq, hash)`` kept elsewhere, e.g. the line the writer logs when it closes — catches the rest.
* Someone able to rewrite a whole chain from some record on, recomputing every hash, is caught only by an
  anchor past that record. The stream refuses message deletes and purges (``deny_delete``, ``deny_purge``), so
  this needs the rights to delete and recreate the audit stream itself.
* ``args_digest`` hides arguments only as well as they resist guessing: anyone holding candidate arguments can
  confirm them against the digest (that is its purpose); low-entropy arguments can be found by trying.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nats_mcp.security.audit.record import _CHAIN, _HEX64, GENESIS, AuditRecord, record_hash

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
    writer: str | None = None
    """Who wrote it (the stream: the writer token of its subject, i.e. the NATS user; None in a file, or for chains
    stored before writers were named)."""

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
            "writer": self.writer,
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
