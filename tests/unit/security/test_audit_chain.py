"""Unit tests of the audit chain: the record's canonical form, hashing, chaining, and verification catching every
alteration, removal, repetition and reordering (with a property test over random tampering)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nats_mcp.security.audit.chain import parse_anchor, verify
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.audit.log import AuditLog
from nats_mcp.security.audit.record import GENESIS, AuditRecord, canonical_json, digest_arguments, record_hash
from nats_mcp.security.principal import Principal

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldC12YWx1ZQ"
ALICE = Principal(subject="alice", issuer="https://idp.example", method="jwt", peer="10.1.2.3")


class _Discard:
    """A sink that is never started: these tests only seal records."""

    name = "discard"

    async def write(self, batch: Any) -> int:
        return len(batch)

    async def wait_ready(self, timeout: float) -> None:
        return None

    async def close(self) -> None:
        return None


def sealed(n: int, chain: str | None = None) -> list[AuditRecord]:
    """``n`` sealed records of one chain, made outside any event loop (nothing is written)."""
    log = AuditLog([_Discard()], chain=chain, max_pending=n + 2)
    out = []
    for i in range(n):
        record = log.append(
            AuditEvent(
                "tool_call",
                principal=ALICE,
                transport="http",
                tool=f"tool_{i % 3}",
                namespace="ns-a",
                outcome="ok" if i % 4 else "not_found",
                latency_ms=i * 1.25,
                arguments={"i": i},
            ),
        )
        assert record is not None
        out.append(record)
    return out


def dicts(records: list[AuditRecord]) -> list[dict[str, Any]]:
    return [json.loads(r.to_json()) for r in records]


def resealed(data: dict[str, Any]) -> dict[str, Any]:
    """What a forger who knows the algorithm stores: the record with its hash recomputed."""
    return {**data, "hash": record_hash(data)}


# -- the record --------------------------------------------------------------------------------------


def test_digest_of_arguments_is_sha256_of_canonical_json() -> None:
    expected = hashlib.sha256('{"a":1,"b":"é","c":[1,{"x":null}]}'.encode()).hexdigest()
    assert digest_arguments({"c": [1, {"x": None}], "b": "é", "a": 1}) == expected
    assert digest_arguments({"a": 1}) != digest_arguments({"a": 2})
    assert digest_arguments(None) == digest_arguments({}) == hashlib.sha256(b"{}").hexdigest()
    assert len(digest_arguments({"odd": object(), "nan": float("nan")})) == 64  # never fails a call


def test_a_record_hashes_the_canonical_json_of_every_other_field() -> None:
    record = sealed(1)[0]
    stored = record.to_json()
    data = json.loads(stored)
    assert stored == canonical_json(data)
    assert set(data) == {
        "v",
        "time",
        "kind",
        "principal",
        "transport",
        "peer",
        "tool",
        "namespace",
        "outcome",
        "latency_ms",
        "args_digest",
        "reason",
        "count",
        "ref",
        "chain",
        "seq",
        "prev",
        "hash",
    }
    body = {k: v for k, v in data.items() if k != "hash"}
    assert data["hash"] == hashlib.sha256(canonical_json(body)).hexdigest() == record.hash
    assert data["principal"] == {"issuer": "https://idp.example", "subject": "alice", "method": "jwt", "key_id": None}
    assert data["peer"] == "10.1.2.3"
    assert data["time"].endswith("Z") and len(data["time"]) == len("2026-01-02T03:04:05.678Z")
    assert data["args_digest"] == digest_arguments({"i": 0})


def test_records_chain_from_genesis() -> None:
    records = sealed(5)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev == GENESIS
    for before, after in itertools.pairwise(records):
        assert after.prev == before.hash
        assert after.chain == before.chain


def test_secrets_never_reach_a_record() -> None:
    log = AuditLog([_Discard()])
    record = log.append(
        AuditEvent(
            "denied",
            principal=ALICE,
            tool=f"send {TOKEN}",  # a caller-chosen name: only its digest is kept
            namespace="NOT A NAME",
            outcome="forbidden",
            arguments={"token": TOKEN, "message": f"Bearer {TOKEN}"},
            reason=f"refused token {TOKEN} (Authorization: Bearer {TOKEN})",
        ),
    )
    assert record is not None
    stored = record.to_json().decode()
    assert TOKEN not in stored
    assert "c2lnbmF0dXJl" not in stored
    assert record.tool is not None and record.tool.startswith("invalid:")
    assert record.namespace is not None and record.namespace.startswith("invalid:")
    assert verify([record]).ok


def test_a_latency_json_cannot_express_is_left_out() -> None:
    record = AuditLog([_Discard()]).append(AuditEvent("tool_call", latency_ms=float("nan")))
    assert record is not None and record.latency_ms is None and verify([record]).ok


def test_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="invalid audit kind"):
        AuditLog([_Discard()]).append(AuditEvent("Tool Call"))


def test_disabled_or_sinkless_logs_record_nothing() -> None:
    assert AuditLog([_Discard()], enabled=False).append(AuditEvent("tool_call")) is None
    assert AuditLog([]).append(AuditEvent("tool_call")) is None


# -- verification ------------------------------------------------------------------------------------


def test_an_intact_chain_verifies() -> None:
    result = verify(sealed(5))
    assert result.ok and result.problem is None
    assert result.summary == "5 records in 1 chain verified"
    assert result.chains[0].last_seq == 5 and result.chains[0].first_seq == 1
    assert result.open_chains == [result.chains[0].chain]  # no chain_end: open


def test_stored_bytes_verify_like_records() -> None:
    records = sealed(4)
    assert verify([r.to_json() for r in records]).ok
    assert verify([r.to_json().decode() for r in records]).ok
    assert verify(dicts(records)).ok


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("outcome", "ok!"),
        ("tool", "other_tool"),
        ("latency_ms", 99.0),
        ("time", "2020-01-01T00:00:00.000Z"),
        ("principal", {"issuer": "https://idp.example", "subject": "mallory", "method": "jwt", "key_id": None}),
        ("args_digest", "f" * 64),
        ("kind", "chain_end"),
        ("chain", "f" * 32),
        ("seq", 30),
        ("extra", "added"),
    ],
)
def test_altering_any_field_is_detected(field: str, value: Any) -> None:
    data = dicts(sealed(5))
    data[2][field] = value
    result = verify(data)
    assert not result.ok and result.problem is not None
    assert (result.problem.chain, result.problem.where) == (data[2]["chain"], "record 3")
    assert "altered" in result.problem.what
    assert result.summary.startswith("audit chain broken: chain ")


def test_removing_a_middle_record_is_detected() -> None:
    data = dicts(sealed(5))
    del data[2]
    problem = verify(data).problem
    assert problem is not None
    assert (problem.seq, problem.where) == (4, "record 3")
    assert "seq 4 follows seq 2: 1 record missing" in problem.what


def test_removing_the_first_record_is_detected_unless_expiry_is_allowed() -> None:
    data = dicts(sealed(4))[1:]
    problem = verify(data).problem
    assert problem is not None and problem.seq == 2
    assert "starts at seq 2: record 1 is missing" in problem.what
    assert verify(data, allow_expired_head=True).ok


def test_swapping_two_records_is_detected() -> None:
    data = dicts(sealed(5))
    data[1], data[3] = data[3], data[1]
    problem = verify(data).problem
    assert problem is not None and (problem.seq, problem.where) == (4, "record 2")


def test_a_repeated_record_is_detected() -> None:
    data = dicts(sealed(3))
    data.insert(2, data[1])
    problem = verify(data).problem
    assert problem is not None and "seq 2 comes after seq 2: records repeated or out of order" in problem.what


def test_a_changed_prev_is_detected_even_when_the_hash_is_recomputed() -> None:
    data = dicts(sealed(4))
    data[2] = {**data[2], "prev": "a" * 64}
    problem = verify(data).problem
    assert problem is not None and "altered" in problem.what and "hash does not match" in problem.what
    data[2] = resealed(data[2])
    problem = verify(data).problem
    assert problem is not None and problem.seq == 3
    assert "its prev is not the hash of seq 2" in problem.what


def test_a_rewritten_first_record_must_still_start_from_genesis() -> None:
    data = dicts(sealed(2))
    data[0] = resealed({**data[0], "prev": "1" * 64})
    problem = verify(data).problem
    assert problem is not None and "prev = 64 zeros" in problem.what


def test_a_rewritten_tail_is_caught_by_an_anchor() -> None:
    records = sealed(5)
    data = dicts(records)
    data[3] = resealed({**data[3], "outcome": "forged"})
    data[4] = resealed({**data[4], "prev": data[3]["hash"]})
    assert verify(data).ok  # a forger who recomputes every later hash: a bare chain cannot tell
    anchor = (records[4].chain, 5, records[4].hash)
    problem = verify(data, anchors=[anchor]).problem
    assert problem is not None and problem.seq == 5 and "anchor" in problem.what


def test_removing_the_last_record_is_caught_only_by_an_anchor() -> None:
    records = sealed(5)
    assert verify(records[:-1]).ok  # the documented limit of a bare hash chain
    anchor = (records[0].chain, 5, records[4].hash)
    problem = verify(records[:-1], anchors=[anchor]).problem
    assert problem is not None and problem.where == "end of input"
    assert "ends at seq 4, before the anchored seq 5" in problem.what


async def test_a_closed_chain_ends_and_nothing_may_follow_its_end() -> None:
    class Keep(_Discard):
        def __init__(self) -> None:
            self.records: list[AuditRecord] = []

        async def write(self, batch: Any) -> int:
            self.records.extend(batch)
            return len(batch)

    sink = Keep()
    log = AuditLog([sink])
    log.record(AuditEvent("tool_call", tool="a"))
    await log.close()
    assert [r.kind for r in sink.records] == ["tool_call", "chain_end"]
    result = verify(sink.records)
    assert result.ok and result.open_chains == [] and result.chains[0].ended
    after = dicts(sink.records)
    after.append(resealed({**after[0], "seq": 3, "prev": after[1]["hash"]}))
    problem = verify(after).problem
    assert problem is not None and "after the chain's end" in problem.what


def test_interleaved_chains_verify_and_a_problem_names_its_chain() -> None:
    a, b = sealed(4), sealed(3)
    mixed = dicts([a[0], b[0], a[1], a[2], b[1], b[2], a[3]])
    result = verify(mixed)
    assert result.ok and result.summary == "7 records in 2 chains verified"
    mixed[4]["outcome"] = "x"
    problem = verify(mixed).problem
    assert problem is not None and problem.chain == b[0].chain and problem.seq == 2


@pytest.mark.parametrize(
    ("item", "what"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        ({"seq": 1}, "no valid chain id"),
        ({"chain": "a" * 32, "seq": True}, "no valid seq"),
        ({"chain": "a" * 32, "seq": 1, "prev": "x"}, "no valid prev"),
        ({"chain": "a" * 32, "seq": 1, "prev": GENESIS, "hash": None}, "no valid hash"),
        (
            b'{"chain":"'
            + b"a" * 32
            + b'","seq":1,"prev":"'
            + b"0" * 64
            + b'","hash":"'
            + b"0" * 64
            + b'","latency_ms":NaN}',
            "not canonical",
        ),
    ],
)
def test_something_that_is_not_a_record_is_reported(item: Any, what: str) -> None:
    problem = verify([*sealed(1), item]).problem
    assert problem is not None and what in problem.what and problem.where == "record 2"


def test_anchors_parse() -> None:
    chain, digest = "a" * 32, "b" * 64
    assert parse_anchor(f"{chain}:12:{digest}") == (chain, 12, digest)
    for bad in ("x:1:y", f"{chain}:one:{digest}", f"{chain}:1", f"{chain}:1:{digest}:extra"):
        with pytest.raises(ValueError, match="not an anchor"):
            parse_anchor(bad)


# -- property: any tampering but a cut tail is caught -------------------------------------------------

_MUTATIONS = st.sampled_from(["delete", "swap", "alter", "duplicate", "move"])


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=2, max_value=25), mutation=_MUTATIONS, data=st.data())
def test_tampering_is_always_detected(n: int, mutation: str, data: st.DataObject) -> None:
    original = dicts(sealed(n))
    tampered = [dict(d) for d in original]
    i = data.draw(st.integers(min_value=0, max_value=n - 1), label="i")
    if mutation == "delete":
        if i == n - 1:
            i = data.draw(st.integers(min_value=0, max_value=n - 2), label="i (not the last)")
        del tampered[i]
    elif mutation == "swap":
        j = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda j: j != i), label="j")
        tampered[i], tampered[j] = tampered[j], tampered[i]
    elif mutation == "alter":
        field = data.draw(st.sampled_from(["outcome", "tool", "latency_ms", "time", "peer", "reason"]), label="f")
        tampered[i][field] = "tampered"
        if data.draw(st.booleans(), label="recompute hash"):
            tampered[i] = resealed(tampered[i])  # then the next link (or an anchor, for the last) must catch it
    elif mutation == "duplicate":
        tampered.insert(i + 1, dict(tampered[i]))
    else:  # move one record elsewhere
        j = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda j: j != i), label="j")
        tampered.insert(j, tampered.pop(i))
    head = (original[-1]["chain"], n, original[-1]["hash"])
    assert not verify(tampered, anchors=[head]).ok
    if not (mutation == "alter" and i == n - 1):
        assert not verify(tampered).ok  # only a recomputed last record needs the anchor


@settings(max_examples=60, deadline=None)
@given(
    reason=st.one_of(st.none(), st.text(max_size=60), st.just(',"kind":"forged","hash":"x"')),
    outcome=st.text(max_size=20),
    peer=st.one_of(st.none(), st.text(max_size=20)),
    issuer=st.text(max_size=30),
    latency=st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)),
)
def test_the_stored_form_kept_at_sealing_is_the_canonical_json_of_the_record(
    reason: str | None, outcome: str, peer: str | None, issuer: str, latency: float | None
) -> None:
    """Sealing keeps the stored form (the encoded body with the hash spliced in) so a write does not encode the record
    again: it must be byte for byte the canonical JSON of every field, whatever text the fields hold."""
    log = AuditLog([_Discard()], max_pending=4)
    who = Principal(subject="s", issuer=issuer, method="jwt", peer=peer)
    event = AuditEvent("denied", principal=who, outcome=outcome, reason=reason, latency_ms=latency, arguments={})
    record = log.append(event)
    assert record is not None
    assert record.to_json() == canonical_json(record.to_dict())
    assert record_hash(json.loads(record.to_json())) == record.hash
    # A record changed after sealing carries no stale stored form.
    changed = dataclasses.replace(record, outcome=outcome + "!")
    assert json.loads(changed.to_json())["outcome"] == outcome + "!"
