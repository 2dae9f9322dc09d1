"""Pure-logic boundaries of the dashboard: sessions, the audit feed from a file, terminal text, the admin op."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.responses import Response

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.config.security import SecuritySettings
from nats_mcp.coord.context import owner_key
from nats_mcp.dashboard.app import RECHECK_S, DashboardApp
from nats_mcp.dashboard.audit_feed import AuditFeed
from nats_mcp.dashboard.data import Dashboard, clip
from nats_mcp.dashboard.sessions import Sessions
from nats_mcp.dashboard.terminal import plain, spark
from nats_mcp.security.authn.apikeys import ApiKeyRecord
from nats_mcp.security.guard import Guard
from nats_mcp.security.policy import BUILTIN, Policy, PolicyError, parse_policy
from nats_mcp.security.principal import Principal
from tests.support.env import settings_for

WHO = Principal(subject="ops", issuer="nats-mcp", method="apikey", roles=frozenset({"admin"}), key_id="abc")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- sessions -------------------------------------------------------------------------------------------------------


def test_a_session_is_found_by_its_id_only_and_ends_when_idle_or_too_old() -> None:
    clock = Clock()
    sessions = Sessions(idle_s=60, max_s=300, max_entries=10, clock=clock)
    sid, session = sessions.create(WHO)
    assert len(sid) >= 40 and sessions.get(sid) is session
    assert sessions.get(sid[:-1] + ("A" if sid[-1] != "A" else "B")) is None  # forged
    assert sessions.get(None) is None and sessions.get("") is None and sessions.get("x" * 500) is None
    # idle: 59 s apart keeps it alive, each use restarts the idle timer ...
    for _ in range(5):  # 295 s after login
        clock.now += 59
        assert sessions.get(sid) is session
    # ... but not past the absolute limit (300 s after login), however active.
    clock.now += 59
    assert sessions.get(sid) is None
    other, _ = sessions.create(WHO)
    clock.now += 61
    assert sessions.get(other) is None  # idle too long
    assert len(sessions) == 0  # expired sessions are removed, not just refused


def test_sessions_are_bounded_and_can_be_dropped() -> None:
    sessions = Sessions(idle_s=60, max_s=300, max_entries=2, clock=Clock())
    first, _ = sessions.create(WHO)
    second, _ = sessions.create(WHO)
    third, _ = sessions.create(WHO)
    assert sessions.get(first) is None and sessions.get(second) is not None and sessions.get(third) is not None
    sessions.drop(second)
    assert sessions.get(second) is None
    a, b = sessions.create(WHO)[1], sessions.create(WHO)[1]
    assert a.csrf != b.csrf and len(a.csrf) >= 24


# ---- the audit feed (file source) -----------------------------------------------------------------------------------


def record(
    kind: str,
    *,
    subject: str | None = "agent-1",
    tool: str | None = None,
    outcome: str = "ok",
    reason: str | None = None,
    peer: str = "127.0.0.1",
    time: str = "2026-01-01T00:00:00.000Z",
) -> dict[str, Any]:
    principal = {"issuer": "i", "subject": subject, "method": "apikey", "key_id": "k1"} if subject else None
    return {
        "time": time,
        "kind": kind,
        "principal": principal,
        "transport": "http",
        "peer": peer,
        "tool": tool,
        "outcome": outcome,
        "reason": reason,
    }


def write(path: Path, *records: dict[str, Any], mode: str = "a") -> None:
    with path.open(mode) as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")


async def test_the_feed_reads_only_new_records_of_a_file_and_counts_traffic(tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    write(trail, record("tool_call", tool="channels_send"), record("auth_failure", subject=None, reason="bad_key"))
    write(trail, record("tool_call", tool="channels_send", outcome="forbidden"), record("anomaly", reason="burst"))
    with trail.open("a") as fh:
        fh.write("not json\n[1]\n")
    feed = AuditFeed(None, trail, events=3, window=100)
    await feed.refresh()
    assert feed.source == "file" and "audit.jsonl" in feed.security()["note"]
    events = feed.security()["events"]
    assert [(e["kind"], e["principal"], e["reason"]) for e in events] == [
        ("anomaly", "agent-1 [key k1]", "burst"),
        ("auth_failure", None, "bad_key"),
    ]
    assert feed.traffic()["edges"] == [
        {"principal": "agent-1 [key k1]", "agents": [], "tool": "channels_send", "calls": 2, "errors": 1}
    ]
    # A second look reads only what was appended (no double counting); a half-written line waits.
    write(trail, record("tool_call", tool="work_claim"))
    with trail.open("a") as fh:
        fh.write('{"kind": "denied"')
    await feed.refresh()
    assert feed.traffic()["window"] == 3
    with trail.open("a") as fh:
        fh.write(', "reason": "policy_denied"}\n')
    write(trail, record("denied", reason="x"), record("locked_out"))
    await feed.refresh()
    assert [e["kind"] for e in feed.security()["events"]] == ["locked_out", "denied", "denied"]  # newest 3 kept
    # The file replaced by a shorter one: read again from its start.
    write(trail, record("rate_limited"), mode="w")
    await feed.refresh()
    assert feed.security()["events"][0]["kind"] == "rate_limited"


async def test_identical_security_events_are_one_row_with_their_true_count_and_times(tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"

    def refusal(**where: str) -> dict[str, Any]:
        return record("auth_failure", subject=None, reason="unknown_key", outcome="unauthenticated", **where)

    write(trail, *(refusal(time=f"2026-01-01T00:00:{i // 10:02d}.{i % 10}00Z") for i in range(300)))
    write(trail, refusal(peer="10.0.0.9"), record("denied", reason="policy_denied"))
    feed = AuditFeed(None, trail, events=30, window=10)  # both bounds far below 300
    await feed.refresh()
    security = feed.security()
    assert security["total"] == 302
    # Another address, or another kind, is its own row; the 300 repeats are one, newest first.
    assert [(e["kind"], e["peer"], e["count"]) for e in security["events"]] == [
        ("denied", "127.0.0.1", 1),
        ("auth_failure", "10.0.0.9", 1),
        ("auth_failure", "127.0.0.1", 300),
    ]
    repeats = security["events"][2]
    assert (repeats["firstSeen"], repeats["lastSeen"]) == ("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:29.900Z")
    assert repeats["reason"] == "unknown_key" and repeats["principal"] is None

    # A repeat seen again later moves its row to the top, counted on.
    write(trail, *(record("rate_limited", reason=f"r{i}", time="2026-01-01T00:01:00.000Z") for i in range(27)))
    write(trail, refusal(time="2026-01-01T00:02:00.000Z"))
    await feed.refresh()
    security = feed.security()
    assert security["total"] == 330 and len(security["events"]) == 30
    newest = security["events"][0]
    assert (newest["kind"], newest["count"], newest["firstSeen"], newest["lastSeen"]) == (
        "auth_failure",
        301,
        "2026-01-01T00:00:00.000Z",
        "2026-01-01T00:02:00.000Z",
    )
    # More kinds of event than rows: the least recently seen rows go; the total still counts every event.
    write(trail, *(record("anomaly", reason=f"a{i}", time="2026-01-01T00:03:00.000Z") for i in range(29)))
    await feed.refresh()
    security = feed.security()
    assert security["total"] == 359 and len(security["events"]) == 30
    assert [e["kind"] for e in security["events"]][-1] == "auth_failure"
    assert sum(e["kind"] == "rate_limited" for e in security["events"]) == 0


async def test_the_feed_names_the_agents_of_a_principal(tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    write(trail, record("tool_call", tool="work_claim"), record("denied", tool="dlq_list", reason="admin_only"))
    feed = AuditFeed(None, trail, events=5, window=10)
    await feed.refresh()
    owner = owner_key("agent-1", "i")  # what binding.caller_for stores in the agent's registry entry
    assert feed.via(owner) == "agent-1 [key k1]" and feed.via(owner_key("agent-1", "other")) is None
    agents = {owner: ["builder", "tester"]}

    def agents_of(key: str) -> list[str]:
        return agents.get(key, [])

    [edge] = feed.traffic(agents_of=agents_of)["edges"]
    assert (edge["principal"], edge["agents"]) == ("agent-1 [key k1]", ["builder", "tester"])
    [event] = feed.security(agents_of)["events"]
    assert (event["principal"], event["agents"]) == ("agent-1 [key k1]", ["builder", "tester"])


async def test_the_feed_keeps_its_namespace_and_namespaceless_events(tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    mine, theirs = {"namespace": "team-a"}, {"namespace": "team-b"}
    write(
        trail,
        {**record("tool_call", tool="t1"), **mine},
        {**record("tool_call", tool="t2"), **theirs},
        {**record("denied", reason="policy_denied"), **theirs},
        {**record("denied", reason="mine"), **mine},
        record("auth_failure", subject=None, reason="bad"),
    )
    feed = AuditFeed(None, trail, events=10, window=10, namespace="team-a")
    await feed.refresh()
    assert [e["tool"] for e in feed.traffic()["edges"]] == ["t1"]
    assert [e["reason"] for e in feed.security()["events"]] == ["bad", "mine"]


async def test_the_feed_says_why_it_shows_nothing(tmp_path: Path) -> None:
    off = AuditFeed(None, None, events=5, window=10)
    await off.refresh()
    assert off.source == "off" and "auditing is off" in off.security()["note"]
    missing = AuditFeed(None, tmp_path / "none.jsonl", events=5, window=10)
    await missing.refresh()
    assert "cannot read the audit file" in missing.security()["note"] and missing.security()["events"] == []


# ---- text ----------------------------------------------------------------------------------------------------------


def test_terminal_text_is_inert_and_page_text_is_clipped() -> None:
    shown = plain("\x1b[2J[bold]x[/bold]\x07\n", limit=100)
    assert "\x1b" not in shown.plain and "\x07" not in shown.plain and "\n" not in shown.plain
    assert "[bold]x[/bold]" in shown.plain and shown.spans == []
    assert len(plain("y" * 500, limit=10).plain) == 10
    assert clip("z" * 1000) == "z" * 299 + "…" and clip("short") == "short"
    assert spark([0, 5, 10]) == "▁▄█" and spark([]) == ""


# ---- the admin operation -------------------------------------------------------------------------------------------


def test_dashboard_is_an_admin_op_the_builtin_policy_grants_and_a_policy_file_must_list() -> None:
    agent = Principal(subject="a", issuer="i", method="apikey", roles=frozenset({"agent"}))
    assert Policy(BUILTIN).admin_allowed(agent, "dashboard")  # the quick start's key opens the dashboard
    doc = parse_policy("version: 1\nroles:\n  agent: {tools: ['*'], admin: [dlq]}\n  ops: {admin: [dashboard]}\n")
    policy = Policy(doc)
    assert not policy.admin_allowed(agent, "dashboard") and policy.admin_allowed(agent, "dlq")
    ops = Principal(subject="o", issuer="i", method="apikey", roles=frozenset({"ops"}))
    assert policy.admin_allowed(ops, "dashboard") and not policy.tool_allowed(ops, "channels_send", ())
    with pytest.raises(PolicyError, match="admin"):
        parse_policy("version: 1\nroles:\n  x: {admin: [everything]}\n")


async def test_a_snapshot_without_nats_says_so_and_still_reads_an_audit_file(tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    write(trail, record("auth_failure", subject=None, reason="bad_signature"))
    env = {
        "NATS_URL": "nats://127.0.0.1:1",
        "NATS_MCP_NAMESPACE": "team-a",
        "NATS_MCP_SECURITY_AUDIT_STREAM": "false",
        "NATS_MCP_SECURITY_AUDIT_FILE": str(trail),
    }
    settings = settings_for(tmp_path, **env)
    dash = Dashboard(NatsConnection(settings), settings)  # never started: not connected
    snap = await dash.build()
    assert snap["nats"] == {"connected": False} and snap["namespace"] == "team-a"
    assert snap["errors"] == ["NATS is not connected; showing nothing until it is"]
    assert (snap["agents"], snap["channels"], snap["queues"]) == ({"total": 0, "shown": []}, [], [])
    assert snap["security"]["source"] == "file" and snap["security"]["events"][0]["reason"] == "bad_signature"
    json.dumps(snap)  # what the page and `top --json` get is plain JSON
    await dash.aclose()


# ---- a session re-checks its credential -------------------------------------------------------------------------


class Keys:
    """The API-key store as the dashboard sees it: a record by id, or a failure to read one."""

    def __init__(self, record: ApiKeyRecord | None) -> None:
        self.record = record
        self.reads = 0
        self.down = False

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        self.reads += 1
        if self.down:
            raise TimeoutError("NATS is away")
        return self.record


def key_record(**changes: Any) -> ApiKeyRecord:
    base = ApiKeyRecord(
        id="abc",
        name="ops",
        roles=("admin",),
        namespaces=None,
        created=0.0,
        expires=None,
        revoked=False,
        revoked_at=None,
        salt=b"s",
        hash=b"h",
    )
    return replace(base, **changes)


async def test_a_session_ends_with_its_key_and_survives_an_outage_of_the_key_store(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, NATS_URL="nats://127.0.0.1:1", NATS_MCP_NAMESPACE="team-a")
    keys = Keys(key_record())
    app = DashboardApp(
        Dashboard(NatsConnection(settings), settings),
        Guard(SecuritySettings(), Policy(BUILTIN)),
        SimpleNamespace(apikeys=keys),
        hosts=["h"],
        origins=["http://h"],
        secure=False,
    )  # type: ignore[arg-type]
    clock = Clock()
    app.sessions = Sessions(idle_s=600, max_s=3600, max_entries=10, clock=clock)
    sid, session = app.sessions.create(WHO)
    request: Any = SimpleNamespace(cookies={"nmcp_dashboard": sid}, client=None)

    assert await app._live_session(request) is session and keys.reads == 1
    assert await app._live_session(request) is session and keys.reads == 1  # re-checked at most every RECHECK_S
    clock.now += RECHECK_S
    keys.down = True  # the key store unreachable: this request is refused, nobody is logged out
    refused = await app._live_session(request)
    assert isinstance(refused, Response) and refused.status_code == 503 and app.sessions.get(sid) is session
    keys.down = False
    keys.record = key_record(revoked=True, revoked_at=1.0)
    assert await app._live_session(request) is None and app.sessions.get(sid) is None  # gone, not just refused
    for gone in (None, key_record(expires=1.0)):  # a deleted record, an expired key
        keys.record = gone
        sid, _ = app.sessions.create(WHO)
        request.cookies["nmcp_dashboard"] = sid
        assert await app._live_session(request) is None and app.sessions.get(sid) is None
