"""Who sees which registry entry and which of its fields, and the discover index agreeing with those rules."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nats_mcp.coord.context import Caller
from nats_mcp.coord.models import AgentRecord
from nats_mcp.coord.registry.index import AgentIndex, Filters, sort_key
from nats_mcp.coord.registry.visibility import (
    SCOPES,
    can_see,
    effective_status,
    entry_for,
    format_time,
    parse_time,
    shows_hostname,
    shows_project,
)

NOW = 1_750_000_000.0
STALE = 180.0
GUIDS = [f"{i:032x}" for i in range(1, 9)]


def record(guid: str = GUIDS[0], namespace: str = "alpha", **fields: Any) -> AgentRecord:
    values: dict[str, Any] = {
        "guid": guid,
        "namespace": namespace,
        "handle": "h",
        "agentType": "coder",
        "capabilities": ["py"],
        "scope": "team",
        "status": "online",
        "lastHeartbeat": format_time(NOW - 1),
        "registeredAt": format_time(NOW - 100),
        "hostname": "host-a",
        "projectId": "0123456789abcdef",
        "owner": "owner-1",
    }
    values.update(fields)
    return AgentRecord(**values)


def viewer(guid: str = GUIDS[7], namespace: str = "alpha", owner: str = "owner-2") -> Caller:
    return Caller(guid=guid, namespace=namespace, project_id="0123456789abcdef", owner=owner)


# -- the rules ------------------------------------------------------------------------------------


def test_scope_table() -> None:
    same_ns, other_ns = viewer(), viewer(namespace="beta")
    same_owner_other_ns = viewer(namespace="beta", owner="owner-1")
    itself = viewer(guid=GUIDS[0])
    expected = {
        # scope: (same namespace, other namespace, same owner in other namespace, self)
        "private": (False, False, False, True),
        "personal": (False, False, True, True),
        "team": (True, False, False, True),
        "public": (True, True, True, True),
    }
    for scope, answers in expected.items():
        entry = record(scope=scope)
        got = tuple(can_see(v, entry) for v in (same_ns, other_ns, same_owner_other_ns, itself))
        assert got == answers, scope


def test_personal_needs_a_known_owner() -> None:
    assert not can_see(viewer(owner=""), record(scope="personal", owner=""))


def test_self_is_the_same_guid_in_the_same_namespace() -> None:
    assert not can_see(viewer(guid=GUIDS[0], namespace="beta"), record(scope="private"))


def test_redaction_for_others() -> None:
    team = entry_for(viewer(), record(scope="team"), NOW, STALE)
    assert team.hostname == "host-a" and team.projectId == "0123456789abcdef"
    assert team.registeredAt is None and team.namespace is None

    public_elsewhere = entry_for(viewer(namespace="beta"), record(scope="public"), NOW, STALE)
    assert public_elsewhere.hostname == "host-a" and public_elsewhere.projectId is None
    assert public_elsewhere.registeredAt is None and public_elsewhere.namespace == "alpha"

    personal_elsewhere = entry_for(viewer(namespace="beta", owner="owner-1"), record(scope="personal"), NOW, STALE)
    assert personal_elsewhere.hostname is None and personal_elsewhere.projectId is None
    assert personal_elsewhere.namespace == "alpha"
    dumped = personal_elsewhere.model_dump()
    assert "owner" not in dumped  # the owner key is never shown


def test_self_sees_everything() -> None:
    own = entry_for(viewer(guid=GUIDS[0]), record(scope="private"), NOW, STALE)
    assert own.registeredAt == record().registeredAt
    assert own.hostname == "host-a" and own.projectId == "0123456789abcdef" and own.namespace is None


def test_effective_status_goes_offline_after_the_threshold() -> None:
    assert effective_status(record(lastHeartbeat=format_time(NOW - STALE)), NOW, STALE) == "online"
    assert effective_status(record(lastHeartbeat=format_time(NOW - STALE - 0.01)), NOW, STALE) == "offline"
    assert effective_status(record(status="busy"), NOW, STALE) == "busy"
    assert effective_status(record(status="offline"), NOW, STALE) == "offline"


def test_time_format_round_trips() -> None:
    text = format_time(NOW + 0.123)
    assert text.endswith("Z") and abs(parse_time(text) - (NOW + 0.123)) < 0.001


# -- the index agrees with the rules ----------------------------------------------------------------


def naive(records: list[AgentRecord], who: Caller, f: Filters, now: float) -> list[AgentRecord]:
    """The reference: a scan applying the visibility rules one entry at a time."""
    out = []
    for r in sorted(records, key=sort_key):
        status = effective_status(r, now, STALE)
        if not can_see(who, r):
            continue
        if f.agent_type is not None and r.agentType != f.agent_type:
            continue
        if f.capability is not None and f.capability not in r.capabilities:
            continue
        if f.scope is not None and r.scope != f.scope:
            continue
        if f.hostname is not None and (not shows_hostname(who, r) or r.hostname != f.hostname):
            continue
        if f.project_id is not None and (not shows_project(who, r) or r.projectId != f.project_id):
            continue
        if f.status is not None and status != f.status:
            continue
        if f.status is None and not f.include_offline and status == "offline":
            continue
        out.append(r)
    return out


def all_pages(index: AgentIndex, who: Caller, f: Filters, now: float, limit: int) -> tuple[list[AgentRecord], int]:
    out: list[AgentRecord] = []
    after = None
    while True:
        page = index.page(who, f, now=now, stale_after_s=STALE, after=after, limit=limit)
        out += page.records
        if not page.has_more:
            return out, page.total
        after = sort_key(page.records[-1])


records_st = st.builds(
    record,
    guid=st.sampled_from(GUIDS),
    namespace=st.sampled_from(["alpha", "beta"]),
    agentType=st.sampled_from(["coder", "tester"]),
    capabilities=st.lists(st.sampled_from(["py", "go", "rs"]), max_size=3, unique=True),
    scope=st.sampled_from(SCOPES),
    status=st.sampled_from(["online", "busy", "offline"]),
    lastHeartbeat=st.sampled_from([NOW - 1, NOW - STALE + 5, NOW - STALE - 5, NOW - 1000]).map(format_time),
    registeredAt=st.sampled_from([NOW - 300, NOW - 200, NOW - 100]).map(format_time),
    hostname=st.sampled_from(["host-a", "host-b", None]),
    projectId=st.sampled_from(["0123456789abcdef", "fedcba9876543210"]),
    owner=st.sampled_from(["", "owner-1", "owner-2"]),
)
viewers_st = st.builds(
    viewer,
    guid=st.sampled_from(GUIDS),
    namespace=st.sampled_from(["alpha", "beta"]),
    owner=st.sampled_from(["", "owner-1", "owner-2"]),
)
filters_st = st.builds(
    Filters,
    agent_type=st.sampled_from([None, "coder", "tester"]),
    capability=st.sampled_from([None, "py", "go"]),
    hostname=st.sampled_from([None, "host-a", "host-b"]),
    project_id=st.sampled_from([None, "0123456789abcdef"]),
    status=st.sampled_from([None, "online", "busy", "offline"]),
    scope=st.sampled_from([None, *SCOPES]),
    include_offline=st.booleans(),
)


def unique(records: list[AgentRecord]) -> list[AgentRecord]:
    return list({(r.namespace, r.guid): r for r in records}.values())


def check(index: AgentIndex, records: list[AgentRecord], who: Caller, f: Filters, now: float, limit: int) -> None:
    """The index answers as the reference for ``f`` and for the broad queries (random filters often match little)."""
    for filters in (f, Filters(), Filters(include_offline=True)):
        got, total = all_pages(index, who, filters, now, limit)
        want = naive(records, who, filters, now)
        assert got == want, filters
        assert total == len(want)


@settings(max_examples=300, deadline=None)
@given(st.lists(records_st, max_size=16), viewers_st, filters_st, st.integers(1, 5))
def test_index_pages_equal_the_naive_scan(records: list[AgentRecord], who: Caller, f: Filters, limit: int) -> None:
    records = unique(records)
    index = AgentIndex()
    for r in records:
        index.upsert(r)
    check(index, records, who, f, NOW, limit)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(records_st, min_size=1, max_size=12),
    st.lists(st.tuples(st.sampled_from(["upsert", "remove", "tick"]), records_st), max_size=12),
    viewers_st,
    filters_st,
)
@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
def test_index_stays_right_through_changes_and_time(
    records: list[AgentRecord], ops: list[tuple[str, AgentRecord]], who: Caller, f: Filters
) -> None:
    """Incremental updates (heartbeats, status changes), removals and a moving clock vs. the reference."""
    index = AgentIndex()
    current = {(r.namespace, r.guid): r for r in records}
    for r in current.values():
        index.upsert(r)
    now = NOW
    index.page(who, f, now=now, stale_after_s=STALE, after=None, limit=3)  # built: later changes are incremental
    for op, r in ops:
        key = (r.namespace, r.guid)
        if op == "upsert":
            if key in current:  # same agent, same registration: an in-place update
                r = r.model_copy(update={"registeredAt": current[key].registeredAt})
            current[key] = r
            index.upsert(r)
        elif op == "remove":
            current.pop(key, None)
            index.remove(*key)
        else:
            now += 10
        check(index, list(current.values()), who, f, now, 4)


def test_hostname_filter_does_not_reveal_a_redacted_hostname() -> None:
    index = AgentIndex()
    index.upsert(record(scope="personal", hostname="secret-host"))
    same_owner_elsewhere = viewer(namespace="beta", owner="owner-1")
    assert index.page(same_owner_elsewhere, Filters(), now=NOW, stale_after_s=STALE, after=None, limit=5).total == 1
    hidden = index.page(
        same_owner_elsewhere, Filters(hostname="secret-host"), now=NOW, stale_after_s=STALE, after=None, limit=5
    )
    assert hidden.total == 0


def test_keyset_paging_has_no_repeats_or_gaps_while_agents_arrive() -> None:
    index = AgentIndex()
    who = viewer()
    counter = itertools.count()

    def add() -> AgentRecord:
        n = next(counter)
        r = record(guid=f"{n + 100:032x}", registeredAt=format_time(NOW - 1000 + n))
        index.upsert(r)
        return r

    original = [add() for _ in range(45)]
    seen: list[str] = []
    after = None
    while True:
        page = index.page(who, Filters(), now=NOW, stale_after_s=STALE, after=after, limit=20)
        seen += [r.guid for r in page.records]
        for _ in range(3):
            add()  # registered between pages
        if not page.has_more:
            break
        after = sort_key(page.records[-1])
    assert len(seen) == len(set(seen))
    assert {r.guid for r in original} <= set(seen)
