"""Boundary of HTTP session presence: which session ends let which agents leave (pure logic, in process)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from nats_mcp.bus.sessions import SessionRecord
from nats_mcp.coord.context import Caller
from nats_mcp.transports.http.sessions import SessionAgents, enter_session

ALICE = Caller(guid="a" * 32, namespace="team", project_id="0123456789abcdef", owner="o1")
BOB = Caller(guid="b" * 32, namespace="team", project_id="0123456789abcdef", owner="o2")
CAROL = Caller(guid="c" * 32, namespace="team", project_id="0123456789abcdef", owner="o3")
OWNER = "f" * 32


class Left:
    def __init__(self) -> None:
        self.guids: list[str] = []

    async def __call__(self, caller: Caller) -> None:
        self.guids.append(caller.guid)


class Others:
    """The other live sessions of the owner, as the session store would list them."""

    def __init__(self, *records: SessionRecord) -> None:
        self.records = list(records)

    async def of_owner(self, owner: str) -> list[SessionRecord]:
        return [r for r in self.records if r.owner == owner]


def record(session: str, *agents: Caller) -> SessionRecord:
    return SessionRecord(session, OWNER, "2025-11-25", None, None, tuple(asdict(a) for a in agents))


def act(agents: SessionAgents, session: str | None, caller: Caller, left: Left) -> None:
    enter_session(session)
    agents.bind(caller, left)


async def test_a_session_ended_by_its_client_lets_its_agents_leave_unless_another_session_acts_as_them() -> None:
    agents, left = SessionAgents(), Left()
    act(agents, None, ALICE, left)  # no session (2026-07-28): nothing to end later
    assert len(agents) == 0
    act(agents, "1" * 32, ALICE, left)
    act(agents, "1" * 32, BOB, left)  # one session, two agent names
    act(agents, "2" * 32, ALICE, left)
    # s1 ends: bob leaves; alice still acts in s2 here, so she stays.
    await agents.ended("1" * 32, None, None)
    assert left.guids == [BOB.guid]
    await agents.ended("2" * 32, None, None)
    assert left.guids == [BOB.guid, ALICE.guid] and len(agents) == 0


async def test_agents_recorded_by_other_processes_leave_and_other_live_sessions_keep_theirs() -> None:
    agents, left = SessionAgents(), Left()
    act(agents, "1" * 32, ALICE, left)  # this process saw alice only; another process served bob and carol
    ended = record("1" * 32, ALICE, BOB, CAROL)
    elsewhere = Others(ended, record("2" * 32, CAROL), SessionRecord("3" * 32, "e" * 32, "2025-11-25", None))
    await agents.ended("1" * 32, ended, elsewhere)  # type: ignore[arg-type]
    assert sorted(left.guids) == sorted([ALICE.guid, BOB.guid])  # carol acts in session 2 of the same credential


async def test_each_agent_is_recorded_once_per_session() -> None:
    agents, left = SessionAgents(), Left()
    recorded: list[tuple[str, str]] = []

    async def recorder(session: str, caller: Caller) -> None:
        recorded.append((session, caller.guid))

    agents.recorder = recorder
    for _ in range(3):
        act(agents, "1" * 32, ALICE, left)
    act(agents, "1" * 32, BOB, left)
    act(agents, "2" * 32, ALICE, left)
    while agents._tasks:  # the records are written in the background: wait for those tasks themselves
        await asyncio.wait(set(agents._tasks))
    assert recorded == [("1" * 32, ALICE.guid), ("1" * 32, BOB.guid), ("2" * 32, ALICE.guid)]


async def test_the_sessions_remembered_are_bounded() -> None:
    agents, left = SessionAgents(max_sessions=2), Left()
    for session, who in (("1" * 32, BOB), ("2" * 32, ALICE), ("3" * 32, ALICE)):
        act(agents, session, who, left)
    assert len(agents) == 2
    await agents.ended("1" * 32, None, None)  # the least recently used, forgotten (its record still names bob)
    assert left.guids == []
