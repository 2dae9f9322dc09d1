"""Identity binding against a real nats-server: one principal can never read, claim or settle as another."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.coord.errors import Forbidden
from nats_mcp.coord.inbox import InboxService
from nats_mcp.coord.models import AgentRecord
from nats_mcp.coord.work.service import WorkService
from nats_mcp.security.binding import caller_for
from nats_mcp.security.guard import Refused
from nats_mcp.security.policy import Policy, parse_policy
from nats_mcp.security.principal import Principal

POLICY = Policy(
    parse_policy(
        """
roles:
  agent: {tools: ["*"], namespaces: ["team-b"], agents: ["default", "worker-*"],
          capabilities: {broadcast: ["*"], claim: ["*"]}}
principals: [{issuer: "https://idp", subject: "*", roles: [agent]}]
"""
    )
)


def who(subject: str, agent: str | None = None) -> Principal:
    return Principal(subject=subject, issuer="https://idp", method="jwt", agent=agent)


def test_guids_are_bound_to_the_principal_and_allowed_agent_names() -> None:
    alice = caller_for(who("alice"), POLICY, "team-b", "0" * 16)
    assert alice == caller_for(who("alice"), POLICY, "team-b", "0" * 16)  # stable
    assert alice.guid != caller_for(who("bob"), POLICY, "team-b", "0" * 16).guid
    assert alice.guid != caller_for(who("alice", "worker-1"), POLICY, "team-b", "0" * 16).guid
    assert alice.owner != caller_for(who("bob"), POLICY, "team-b", "0" * 16).owner
    for bad in (who("alice", "admin"), who("alice", "Bad.Name")):
        with pytest.raises(Refused):
            caller_for(bad, POLICY, "team-b", "0" * 16)
    with pytest.raises(Refused):
        caller_for(who("alice"), POLICY, "team-c", "0" * 16)


async def test_another_principals_inbox_and_work_stay_out_of_reach(nats_conn: NatsConnection, tmp_path: Path) -> None:
    settings = nats_conn.settings
    alice = caller_for(who("alice"), POLICY, "team-b", "0" * 16)
    mallory = caller_for(who("mallory"), POLICY, "team-b", "0" * 16)
    inbox = InboxService(nats_conn, settings)
    record = AgentRecord(
        guid=alice.guid,
        namespace="team-b",
        handle="alice",
        agentType="dev",
        lastHeartbeat="2026-01-01T00:00:00Z",
        registeredAt="2026-01-01T00:00:00Z",
    )
    await inbox.send(mallory, "mallory", record, content="for alice only")
    # mallory reads "her" inbox: the read is always the caller's own GUID's subject, never alice's
    assert (await inbox.read(mallory)).messages == []
    assert [m.content for m in (await inbox.read(alice)).messages] == ["for alice only"]

    work = WorkService(nats_conn, settings, Layout("team-b"))
    await work.ensure()
    item = await work.broadcast(mallory, task_id="t", description="d", capability="python")
    assert item.offeredBy == mallory.guid
    [claimed] = await work.claim(alice, "python", timeout_ms=0)
    for act in (
        work.complete(mallory, claimed.id),
        work.progress(mallory, claimed.id),
        work.fail(mallory, claimed.id, "sabotage", recoverable=False),
    ):
        with pytest.raises(Forbidden):
            await act
    await work.complete(alice, claimed.id)
    assert uuid.UUID(claimed.id)
