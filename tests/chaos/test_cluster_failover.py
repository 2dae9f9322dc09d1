"""A NATS node dies under two agents' traffic: on a 3-node JetStream cluster with replicas 3, two `nats-mcp serve`
processes keep posting, messaging, handing out work and claiming/completing it (each kind of call in its own loop)
while the meta leader is SIGKILLed and later restarted. Every kind of call is acknowledged again within the
recovery bound of the death (and of the restart); nothing an agent was told was stored (an ``ok`` answer) is lost,
not even for a lease; a tool answers a transient error at most.

Recovery time of a kind: seconds from the kill (the restart) to the first acknowledged call of that kind after
its last unacknowledged one. Long form: ``NATS_MCP_FAILOVER_RUNS=20`` runs the scenario that many times, each on
a fresh cluster, and prints the per-run, per-kind recovery times next to what the dead node led and when the
survivors elected its successors (from the nats-server logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from nats_mcp.api.tools.base import ERROR_META
from tests.chaos.traffic import TRANSIENT, Tally, drain, register_when_ready
from tests.support.natsserver import NatsCluster, start_nats_cluster
from tests.support.stdio import agent

RUNS = int(os.environ.get("NATS_MCP_FAILOVER_RUNS", "1"))
RECOVERY_BOUND_S = float(os.environ.get("NATS_MCP_FAILOVER_BOUND_S", "12"))
"""Robustness limit, asserted: every kind of call is acknowledged again within this many seconds of the death.
Why not 5: a call that writes to a stream, bucket or consumer the dead node led cannot be acknowledged before the
survivors elect its new leader, and nats-server 2.15.1 starts that election when a follower's raft election timer
fires — a random 4–9 s after the last heartbeat from the dead leader, not configurable (measured in the long form:
up to ~9 s). The product adds up to about a second on top (a JetStream request is resent every 0.5 s, a KV get
waits 1.5 s for a leader before it asks a follower), so the floor is ~10 s; 12 leaves room for a loaded 2-core
machine, where timers fire late. The long form reports every run against the 5 s target of issue 21 too."""
AFTER_ELECTION_S = 3.0
"""On a loaded machine the survivors' election itself can come later than the bound (seen in CI: 14.5 s after the
kill): then every kind must be acknowledged within this many seconds of the last election the server logs show —
what the product adds (resends every 0.5 s, a KV get's 1.5 s wait for a leader) with room to spare."""
TARGET_S = 5.0
"""The recovery target of issue 21 (reported per run, not asserted: see RECOVERY_BOUND_S)."""

pytestmark = [pytest.mark.chaos, pytest.mark.cluster, pytest.mark.timeout(150 * RUNS)]

NS = "team-failover"
WARMUP_ROUNDS = 12
ROUNDS_PER_PHASE = 12
STEADY = 3
"""A kind counts as recovered once this many calls of it in a row were acknowledged after its last failure."""
PHASE_DEADLINE_S = 60.0
"""How long a phase may go on waiting for every kind to recover (far above the bound: the test measures, then
asserts, so a slow recovery is reported with its time rather than cut off)."""
PACE_S = 0.2
"""Each kind of call is made at most this often (the resolution of the recovery times)."""
KINDS = ("channel", "dm", "work", "claim")
"""channel send, DM, work broadcast, claim + complete"""


@dataclass
class Recovery:
    """When each kind of call was acknowledged again after an event (the kill, the restart)."""

    since: float
    recovered: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(KINDS))
    streak: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    failures: list[str] = field(default_factory=list)
    """Each unacknowledged call: when it started and ended (seconds after the event), its kind."""

    def note(self, kind: str, acked: bool, started: float) -> None:
        now = time.monotonic()
        self.calls[kind] += 1
        if not acked:
            self.recovered[kind], self.streak[kind] = None, 0
            self.failures.append(f"{kind} {started - self.since:.2f}-{now - self.since:.2f}")
            return
        if self.recovered[kind] is None:
            self.recovered[kind] = now
        self.streak[kind] += 1

    def done(self) -> bool:
        """Every kind called enough and steadily acknowledged since its last failure."""
        return all(self.streak[k] >= STEADY and self.calls[k] >= ROUNDS_PER_PHASE for k in KINDS)

    def seconds(self) -> dict[str, float | None]:
        return {k: None if t is None else round(t - self.since, 2) for k, t in self.recovered.items()}

    def within(self, bound: float) -> bool:
        return all(s is not None and s <= bound for s in self.seconds().values())


@dataclass
class Traffic:
    """Two agents' calls: a posts and messages b, b offers work, a claims and completes it."""

    tally: Tally
    a: Client
    b: Client
    b_guid: str
    acked: dict[str, set[str]] = field(default_factory=lambda: {"channel": set(), "dm": set(), "work": set()})
    completed: set[str] = field(default_factory=set)
    pending: str | None = None
    """An item whose completion got no answer: completed again (it may have been stored) before the next claim."""
    n: int = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    async def send(self) -> bool:
        text = f"m-{self._next()}"
        return await self._stored("channel", text, self.a, "warp_channels_send", channel="roadmap", message=text)

    async def message(self) -> bool:
        text = f"dm-{self._next()}"
        return await self._stored(
            "dm", text, self.a, "warp_messages_send_direct", recipientGuid=self.b_guid, message=text
        )

    async def _stored(self, what: str, key: str, client: Client, tool: str, **args: Any) -> bool:
        if await self.tally.call(client, tool, **args) is None:
            return False
        self.acked[what].add(key)
        return True

    async def broadcast(self) -> bool:
        n = self._next()
        offered = await self.tally.call(
            self.b, "warp_work_broadcast", taskId=f"t-{n}", description=f"do {n}", requiredCapability="python"
        )
        if offered is None:
            return False
        self.acked["work"].add(offered["workItemId"])
        return True

    async def claim_complete(self) -> bool:
        if self.pending is not None:
            return await self._complete(self.pending)
        claimed = await self.tally.call(self.a, "warp_work_claim", capability="python", timeout=1000)
        item = (claimed or {}).get("workItem")
        if item is None:
            return False  # the queue holds a backlog of acknowledged items: an empty claim is no service
        return await self._complete(item["id"])

    async def _complete(self, item_id: str) -> bool:
        result = await self.a.call_tool("warp_work_complete", {"workItemId": item_id})
        error = (result.meta or {}).get(ERROR_META) if result.is_error else None
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        if result.is_error and not (self.pending == item_id and "already completed" in text):
            code = (error or {}).get("code")
            assert code in TRANSIENT, (item_id, text)
            self.tally.transient.append(f"warp_work_complete: {code}")
            self.pending = item_id
            return False
        self.pending = None  # answered ok, or the earlier attempt that got no answer had been stored
        self.completed.add(item_id)
        return True

    async def phase(self, since: float, deadline_s: float) -> Recovery:
        """Every kind of call in its own loop, until each is steadily acknowledged again (or the deadline)."""
        clock, stop = Recovery(since), asyncio.Event()
        steps = {"channel": self.send, "dm": self.message, "work": self.broadcast, "claim": self.claim_complete}

        async def loop(kind: str, step: Callable[[], Awaitable[bool]]) -> None:
            while not stop.is_set():
                started = time.monotonic()
                clock.note(kind, await step(), started)
                if clock.done() or time.monotonic() >= since + deadline_s:
                    stop.set()
                # pacing, not synchronisation: a call of each kind every PACE_S at most, so the loops do not
                # pile up more work than the read-back can claim
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, started + PACE_S - time.monotonic()))

        await asyncio.gather(*(loop(kind, step) for kind, step in steps.items()))
        return clock

    async def settle(self, within_s: float) -> None:
        """Complete the item left without an answer, then read everything back (nothing acknowledged lost)."""
        deadline = time.monotonic() + within_s
        while self.pending is not None and time.monotonic() < deadline:
            await self._complete(self.pending)
        assert self.pending is None, f"could not complete {self.pending}"
        unsettled = {**self.acked, "work": self.acked["work"] - self.completed}
        await drain(self.tally, self.a, self.b, unsettled, deadline)


@dataclass
class RunResult:
    victim: str
    after_kill: Recovery
    after_restart: Recovery
    transient: int
    led: dict[str, float | None]
    """The assets the victim led, with the seconds after the kill a new leader was elected (from the server logs)."""

    @property
    def last_elected(self) -> float:
        """Seconds after the kill the last of the victim's assets had a new leader (0: it led none)."""
        return max((t for t in self.led.values() if t is not None), default=0.0)

    def row(self, i: int) -> str:
        def cells(c: Recovery) -> str:
            return " ".join(f"{'-' if s is None else f'{s:.2f}':>7}" for s in c.seconds().values())

        slowest = self.last_elected
        return (
            f"{i:>3} {self.victim:>6} | {cells(self.after_kill)} | {cells(self.after_restart)} | "
            f"{self.transient:>5} | {len(self.led):>2} {slowest:5.2f} | {self.after_kill.within(TARGET_S)}"
        )


async def failover_run(tmp_path: Path, cluster: NatsCluster) -> RunResult:
    env = {
        "NATS_URL": ",".join(cluster.urls),
        "NATS_MCP_NATS_REPLICAS": "3",
        "NATS_MCP_NATS_RECONNECT_BACKOFF_MIN_S": "0.05",
        "NATS_MCP_NATS_RECONNECT_BACKOFF_MAX_S": "0.5",
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    tally = Tally()
    async with (
        agent(tmp_path, cluster.nodes[0], "a", NS, **env) as a,
        agent(tmp_path, cluster.nodes[0], "b", NS, **env) as b,
    ):
        await register_when_ready(tally, a, "python")
        traffic = Traffic(tally, a, b, await register_when_ready(tally, b))
        # a backlog of offered work, so every claim below has an item to take (freshly made R3 streams may answer a
        # transient error until their leaders are elected)
        warm = time.monotonic() + 30
        for step in [traffic.send, traffic.message, traffic.broadcast] * WARMUP_ROUNDS:
            while not await step():
                assert time.monotonic() < warm, f"not served before the kill: {tally.transient[-3:]}"

        # kill the meta leader (the node most likely to lead the streams too) in the middle of the traffic
        victim = cluster.node(cluster.meta_leader() or "n1")
        leaders = await asyncio.to_thread(cluster.leaders)
        wall, killed = datetime.now(), time.monotonic()
        victim.kill()
        after_kill = await traffic.phase(killed, PHASE_DEADLINE_S)
        assert not victim.is_running

        print(
            f"\n{victim.name} killed; recovery (s): {after_kill.seconds()}; failed: {after_kill.failures}", flush=True
        )
        victim.restart()
        after_restart = await traffic.phase(time.monotonic(), PHASE_DEADLINE_S)
        await asyncio.to_thread(cluster.wait_ready)
        await traffic.settle(90)
    elected = cluster.elections_since(wall)
    led = {asset: elected.get(asset) for asset, leader in leaders.items() if leader == victim.name}
    led["$META"] = elected.get("$META")
    return RunResult(victim.name, after_kill, after_restart, len(tally.transient), led)


async def test_every_kind_of_call_recovers_within_the_bound_of_a_node_death(
    tmp_path: Path, nats_cluster: NatsCluster
) -> None:
    results: list[RunResult] = []
    for i in range(RUNS):
        if i == 0:
            results.append(await failover_run(tmp_path / "run-0", nats_cluster))
        else:
            cluster = await asyncio.to_thread(start_nats_cluster, tmp_path / f"cluster-{i}")
            try:
                results.append(await failover_run(tmp_path / f"run-{i}", cluster))
            finally:
                await asyncio.to_thread(cluster.close)
        print(results[-1].row(i), flush=True)

    head = " ".join(f"{k:>6}" for k in KINDS)
    print(f"\nrecovery (s) of each kind of call; bound {RECOVERY_BOUND_S} s")
    print(
        f"run victim | after the kill: {head} | after the restart: {head} | transient | led, last elected (s)", end=""
    )
    print(f" | all <= {TARGET_S} s")
    for i, r in enumerate(results):
        print(r.row(i))
    for i, r in enumerate(results):
        print(f"run {i}: the victim led {r.led}; unacknowledged calls after the kill: {r.after_kill.failures}")
    met = sum(r.after_kill.within(TARGET_S) for r in results)
    print(f"every kind acknowledged again within {TARGET_S} s of the death in {met} of {len(results)} runs")
    late = [
        (i, r.after_kill.seconds(), r.after_restart.seconds(), r.last_elected)
        for i, r in enumerate(results)
        if not (
            r.after_kill.within(max(RECOVERY_BOUND_S, r.last_elected + AFTER_ELECTION_S))
            and r.after_restart.within(RECOVERY_BOUND_S)
        )
    ]
    assert not late, late
