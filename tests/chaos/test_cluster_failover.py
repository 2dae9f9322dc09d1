"""A NATS node dies under two agents' traffic: on a 3-node JetStream cluster with replicas 3, two `nats-mcp serve`
processes keep posting, messaging and handing out work while one node is SIGKILLed and later restarted. Nothing
an agent was told was stored (an ``ok`` answer) is lost; the servers reconnect by themselves; a tool answers a
transient error at most."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from tests.e2e.test_coordination_stdio import agent
from tests.e2e.test_work_stdio import register
from tests.support.natsserver import NatsCluster

pytestmark = pytest.mark.cluster

NS = "team-failover"
ROUNDS_PER_PHASE = 12
TRANSIENT = {"nats_unavailable", "timeout"}
"""The codes a tool may answer while the cluster elects new leaders; anything else fails the test."""


class Tally:
    """What each tool call answered: the ok results, and the transient errors seen."""

    def __init__(self) -> None:
        self.transient: list[str] = []

    async def call(self, client: Client, tool: str, **args: Any) -> dict[str, Any] | None:
        result = await client.call_tool(tool, args)
        content = result.structured_content or {}
        if not result.is_error:
            return content
        code = content.get("error", {}).get("code")
        assert code in TRANSIENT, (tool, content)
        self.transient.append(f"{tool}: {code}")
        return None


async def round_trip(tally: Tally, a: Client, b: Client, b_guid: str, n: int, acked: dict[str, set[str]]) -> None:
    """One round: a posts to a channel, a messages b, b offers a work item; what was acknowledged is remembered."""
    text = f"m-{n}"
    if await tally.call(a, "warp_channels_send", channel="roadmap", message=text) is not None:
        acked["channel"].add(text)
    if await tally.call(a, "warp_messages_send_direct", recipientGuid=b_guid, message=f"dm-{n}") is not None:
        acked["dm"].add(f"dm-{n}")
    offered = await tally.call(b, "warp_work_broadcast", taskId=f"t-{n}", description=f"do {n}",
                               requiredCapability="python")  # fmt: skip
    if offered is not None:
        acked["work"].add(offered["workItemId"])


async def drain(tally: Tally, a: Client, b: Client, acked: dict[str, set[str]], deadline: float) -> None:
    """Read back everything: the channel, b's inbox, and every work item claimed and completed by a."""
    seen_dm: set[str] = set()
    done: set[str] = set()
    while time.monotonic() < deadline and not (acked["dm"] <= seen_dm and acked["work"] <= done):
        inbox = await tally.call(b, "warp_messages_read_direct", limit=100)
        seen_dm |= {m["content"] for m in (inbox or {}).get("messages", [])}
        claimed = await tally.call(a, "warp_work_claim", capability="python", timeout=1000)
        item = (claimed or {}).get("workItem")
        if item is not None and await tally.call(a, "warp_work_complete", workItemId=item["id"]) is not None:
            done.add(item["id"])
    assert acked["dm"] <= seen_dm, sorted(acked["dm"] - seen_dm)
    assert acked["work"] <= done, sorted(acked["work"] - done)
    history: set[str] = set()
    cursor = None
    while True:
        page = await tally.call(a, "warp_channels_read", channel="roadmap", limit=1000, cursor=cursor)
        assert page is not None
        history |= {m["message"] for m in page["messages"]}
        cursor = page.get("nextCursor")
        if not cursor:
            break
    assert acked["channel"] <= history, sorted(acked["channel"] - history)


async def test_a_node_killed_under_traffic_loses_nothing_acknowledged(
    tmp_path: Path, nats_cluster: NatsCluster
) -> None:
    urls = ",".join(nats_cluster.urls)
    env = {"NATS_URL": urls, "NATS_MCP_NATS_REPLICAS": "3", "NATS_MCP_NATS_RECONNECT_BACKOFF_MIN_S": "0.05",
           "NATS_MCP_NATS_RECONNECT_BACKOFF_MAX_S": "0.5"}  # fmt: skip
    tally = Tally()
    acked: dict[str, set[str]] = {"channel": set(), "dm": set(), "work": set()}
    async with (
        agent(tmp_path, nats_cluster.nodes[0], "a", NS, **env) as a,
        agent(tmp_path, nats_cluster.nodes[0], "b", NS, **env) as b,
    ):
        await register(a, "python")
        b_guid = await register(b)
        n = 0
        for _ in range(ROUNDS_PER_PHASE):
            await round_trip(tally, a, b, b_guid, n := n + 1, acked)

        # kill the meta leader (the node most likely to lead the streams too) in the middle of the traffic
        victim = nats_cluster.node(nats_cluster.meta_leader() or "n1")
        victim.kill()
        before = {k: len(v) for k, v in acked.items()}
        for _ in range(ROUNDS_PER_PHASE):
            await round_trip(tally, a, b, b_guid, n := n + 1, acked)
        assert not victim.is_running
        # with one node of three down the cluster keeps its quorum: the agents were served meanwhile
        assert all(len(acked[k]) > before[k] for k in acked), (acked, tally.transient)
        print(f"while {victim.name} was down: {[len(acked[k]) - before[k] for k in acked]} of {ROUNDS_PER_PHASE} "
              f"acknowledged; transient errors: {tally.transient}")  # fmt: skip

        victim.restart()
        await asyncio.to_thread(nats_cluster.wait_ready)
        for _ in range(ROUNDS_PER_PHASE):
            await round_trip(tally, a, b, b_guid, n := n + 1, acked)

        await drain(tally, a, b, acked, time.monotonic() + 90)

    # after the restart every round was acknowledged again: the servers reconnected by themselves
    total = 3 * ROUNDS_PER_PHASE
    assert len(acked["channel"]) >= total - ROUNDS_PER_PHASE // 2, (acked, tally.transient)
    assert len(acked["work"]) >= total - ROUNDS_PER_PHASE // 2, (acked, tally.transient)
