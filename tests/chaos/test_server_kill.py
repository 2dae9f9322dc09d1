"""The server-kill chaos boundary: a `nats-mcp serve` process SIGKILLed while DLQ retries, claims and completions are
in flight loses no item and completes none twice.

Agents (the real SDK client over streamable HTTP, one API key, an agent name each) work through one serve process on
a real nats-server: a producer keeps a backlog of items queued, workers claim them and complete them (or fail them,
unrecoverably to the DLQ or for a retry), an operator lists the DLQ and retries entries (some with
``resetAttempts``). Meanwhile the test SIGKILLs the serving process ``NATS_MCP_CHAOS_KILLS`` times (6 in CI), each
time aimed at a kind of call — a DLQ retry, a claim, a completion, an unrecoverable fail, in turn — either on the
state write the server makes in the middle of one (the requeue intent, the ``claimed``, ``done`` or ``dead`` record)
or at a random moment while one is under way, and records how many calls of each kind were in flight (each of retry,
claim and completion must have been in flight at one kill at least). A standby serve process
takes over; every agent whose call was cut off reconnects and sends it again, as a real agent would (a claim is
simply made again; a completion again with a new result nonce; a retry again, and its answer — requeued or
``not_found`` — is recorded). Leases are 2 s, so claims a kill cut off come back by themselves.

After the last kill the agents drain the queues (no more failing, no more retrying) until the stored state is final,
waited for with a deadline. The audit reads the stores with nats-py: every item whose broadcast was acknowledged (and
every item a cut-off broadcast made) is completed exactly once or dead-lettered exactly once — never both, never
neither; no completion answered ``ok`` twice, and the stored result is the one sent by the call that was answered
``ok`` (or, if none was, by one left unanswered); the work stream is empty; no requeue intent, state record or DLQ
entry is left that belongs to no item. ``NATS_MCP_CHAOS_ITEMS`` sets the least number of items broadcast (120 in CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyNotFoundError, NoKeysError, NotFoundError

from nats_mcp.bus.layout import Layout
from nats_mcp.coord.models import DlqItem
from nats_mcp.coord.work.store import ItemRecord
from tests.chaos.served_agents import Agent, Flight, Gateway
from tests.support.chaos_seed import SLOTS, chaos_seed, replay_hint
from tests.support.http_server import api_key
from tests.support.natsserver import NatsServer, wait_for

pytestmark = pytest.mark.chaos

NS = "team-kill"
CAP = "chaos"
KILLS = int(os.environ.get("NATS_MCP_CHAOS_KILLS", "6"))
ITEMS = int(os.environ.get("NATS_MCP_CHAOS_ITEMS", "120"))
WORKERS = 4
BACKLOG = 24
"""Items the producer keeps queued (pending or claimed) while the kills go on."""
P_DEAD = 0.25
"""Share of claimed items a worker fails unrecoverably (to the DLQ at once)."""
P_RETRYING = 0.1
"""Share of claimed items a worker fails recoverably (offered again after the backoff)."""
MAX_REQUEUES = 2
"""DLQ retries the operator makes per item; an item dead-lettered after that stays in the DLQ."""
RETRIES_AT_ONCE = 4
TARGETS = ("complete", "claim", "dlq_retry", "fail")
"""What the kills aim at, in turn: the three under test, and an unrecoverable fail (its dead-lettering is what a
DLQ retry undoes: cut half way it left the item's queue message stored). The quick form's 6 kills aim at the state
write of each, then at a moment while a complete and a claim are under way: a complete's state write is the last
step before its answer, so a kill aimed at it may land after the call returned (a CI run saw no complete cut);
DLQ retries go four at once and several steps long, so some are under way at almost every kill."""
WRITTEN = {"claim": "claimed", "complete": "done", "fail": "dead"}
"""The state a record is written with in the middle of a call of each kind."""
TRANSIENT_SHARE = 0.02
"""At most this share of all sends may be answered with a transient error (nats_unavailable, timeout), counted
over the run and asserted: the kills stop serve processes, never NATS, so a transient answer is a NATS call slow on
a busy machine, and rare; more is a server that answers "try again" for what it should handle."""
TRANSIENT_FLOOR = 3
"""... but always allowed this many (a short run on a loaded machine may meet a slow NATS answer or two)."""
JITTER_S = 0.05
"""A kill lands up to this long after a call of its target kind went out (if one is still under way then)."""
TARGET_WAIT_S = 60.0
DRAIN_S = 60.0
CLAIM_MS = 300
WORK_S = (0.0, 0.05)
"""How long a worker works on an item before it completes or fails it."""
ENV = {
    "NATS_MCP_NAMESPACE": NS,
    "NATS_MCP_WORK_ACK_TIMEOUT_MS": "2000",
    "NATS_MCP_WORK_MAX_ATTEMPTS": "4",
    "NATS_MCP_WORK_RETRY_BACKOFF_MS": "200,400",
    # one key, six agents, one address: the abuse limits are not under test here
    "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_RATE_PER_S": "100000",
    "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_BURST": "100000",
    "NATS_MCP_SECURITY_RATE_PER_ADDRESS_RATE_PER_S": "100000",
    "NATS_MCP_SECURITY_RATE_PER_ADDRESS_BURST": "100000",
}


@dataclass
class Kill:
    target: str
    how: str
    in_flight: dict[str, int]
    server: str
    intents: int
    """Requeue intents stored when the process died (retries it left half done, unless another process's)."""


@dataclass
class Ledger:
    """What the agents were told, and what they sent without being told."""

    acked: dict[str, str] = field(default_factory=dict)
    """Item id -> task id, for every broadcast answered ok."""
    cut_tasks: set[str] = field(default_factory=set)
    """Task ids whose broadcast a kill cut off (it was sent again: an unacknowledged item may exist as well)."""
    seen: dict[str, str] = field(default_factory=dict)
    """Item id -> task id, of every item a claim handed out."""
    sent: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Item id -> result nonces of every completion sent."""
    unanswered: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Item id -> nonces of completions sent but never answered for good (cut off by a kill, or transient)."""
    ok_completes: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    answers: Counter[str] = field(default_factory=Counter)
    """``<kind>:<answer>`` tallies (ok or the error code; ``again`` for the answer to a call sent again)."""
    requeues: Counter[str] = field(default_factory=Counter)
    cut_retries: dict[str, str] = field(default_factory=dict)
    """Item id -> how its cut-off DLQ retry was answered when sent again."""
    settled: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Phase:
    draining: bool = False
    over: bool = False
    kills_done: bool = False


@dataclass
class Store:
    """The namespace's work state as stored, read with nats-py."""

    records: dict[str, ItemRecord | None]
    intents: list[str]
    other_keys: list[str]
    dlq: dict[str, list[DlqItem]]
    queued: int
    submissions: list[str]
    """Items with a submission record (``sub.<id>``, what warp_work_get reads): kept, but only of real items."""

    def settled(self, item_id: str) -> bool:
        record = self.records.get(item_id)
        return record is not None and (record.state == "done" or (record.state == "dead" and item_id in self.dlq))

    def final(self, items: set[str]) -> bool:
        """Nothing under way: every item done or dead-lettered, the queue empty, no retry half done."""
        return not self.queued and not self.intents and all(self.settled(i) for i in items)

    def describe(self, items: set[str]) -> str:
        states = Counter(r.state if r else None for i, r in self.records.items() if i in items)
        missing = len(items - set(self.records))
        unsettled = [
            f"{i}: {r.state if (r := self.records.get(i)) else 'no record'}, {len(self.dlq.get(i, []))} DLQ entries"
            for i in sorted(items)
            if not self.settled(i)
        ]
        return (
            f"records {dict(states)} (+{missing} without one), {len(self.dlq)} in the DLQ, {self.queued} queued, "
            f"{len(self.intents)} requeue intents; unsettled: {unsettled[:3]}"
        )


async def read_store(js: JetStreamContext, layout: Layout) -> Store:
    kv = await js.key_value(layout.work_state_bucket)
    try:
        keys = await kv.keys()
    except NoKeysError:
        keys = []
    records: dict[str, ItemRecord | None] = {}
    intents: list[str] = []
    other: list[str] = []
    submissions: list[str] = []
    for key in keys:
        kind, _, item_id = key.partition(".")
        if kind == "item":
            with contextlib.suppress(KeyNotFoundError):  # deleted since listed
                records[item_id] = ItemRecord.decode((await kv.get(key)).value)
        elif kind == "requeue":
            intents.append(item_id)
        elif kind == "sub":
            submissions.append(item_id)
        else:
            other.append(key)
    dlq: dict[str, list[DlqItem]] = defaultdict(list)
    info = await js.stream_info(layout.dlq_stream, subjects_filter=">")
    for subject, count in (info.state.subjects or {}).items():
        item_id = subject.rsplit(".", 1)[-1]
        with contextlib.suppress(NotFoundError):
            entry = DlqItem.model_validate_json((await js.get_last_msg(layout.dlq_stream, subject)).data or b"")
            dlq[item_id].extend([entry] * count)
    queued = (await js.stream_info(layout.work_stream)).state.messages
    return Store(records, intents, other, dict(dlq), queued, submissions)


# ---- the agents ------------------------------------------------------------------------------------------------------


async def register(agent: Agent, *capabilities: str) -> None:
    answer, _ = await agent.ask(
        "register", "warp_registry_register", {"agentType": "worker", "capabilities": list(capabilities)}
    )
    assert answer.error is None, answer


async def produce(agent: Agent, ledger: Ledger, phase: Phase, rng: random.Random) -> None:
    """Keep about BACKLOG items queued until the kills are over and ITEMS were acknowledged."""
    tasks = (f"t-{n}" for n in itertools.count())
    while not (phase.kills_done and len(ledger.acked) >= ITEMS) and not phase.over:
        status, _ = await agent.ask("status", "warp_work_queue_status", {"capability": CAP})
        assert status.error is None, status
        queues = status.data["queues"]
        waiting = sum(q["pending"] + q["inFlight"] for q in queues)
        if waiting >= BACKLOG:
            ledger.settled.clear()
            with contextlib.suppress(TimeoutError):  # items also leave by the server's own doing (lease expiries)
                await asyncio.wait_for(ledger.settled.wait(), 0.5)
            continue
        for _ in range(BACKLOG - waiting):
            task = next(tasks)
            args = {
                "taskId": task,
                "description": f"do {task}",
                "requiredCapability": CAP,
                "priority": rng.randint(1, 10),
            }
            answer, again = await agent.ask("broadcast", "warp_work_broadcast", args)
            if again:
                ledger.cut_tasks.add(task)
            assert answer.error is None, answer
            ledger.acked[answer.data["workItemId"]] = task


async def work(agent: Agent, ledger: Ledger, phase: Phase, rng: random.Random) -> None:
    nonces = (f"{agent.name}-{n}" for n in itertools.count())
    while not phase.over:
        answer, _ = await agent.ask("claim", "warp_work_claim", {"capability": CAP, "timeout": CLAIM_MS})
        assert answer.error is None, answer
        item = answer.data["workItem"]
        if item is None:
            continue
        item_id = item["id"]
        ledger.seen[item_id] = item["taskId"]
        await asyncio.sleep(rng.uniform(*WORK_S))  # working on it
        roll = rng.random()
        if not phase.draining and roll < P_DEAD + P_RETRYING:
            recoverable = roll >= P_DEAD
            args = {"workItemId": item_id, "reason": "chaos says no", "recoverable": recoverable}
            failed, again = await agent.ask("fail", "warp_work_fail", args)
            outcome = failed.error or failed.data["status"]
            ledger.answers[f"fail:{outcome}{':again' if again else ''}"] += 1
            assert failed.error in (None, "conflict", "forbidden"), failed
        else:
            await complete(agent, item_id, ledger, nonces)
        ledger.settled.set()


async def complete(agent: Agent, item_id: str, ledger: Ledger, nonces: Any) -> None:
    sent: list[str] = []

    def args() -> dict[str, Any]:
        sent.append(next(nonces))
        ledger.sent[item_id].add(sent[-1])
        return {"workItemId": item_id, "result": {"by": agent.name, "nonce": sent[-1]}}

    answer, again = await agent.ask("complete", "warp_work_complete", args)
    ledger.unanswered[item_id].update(sent[:-1])
    if answer.error is None:
        ledger.ok_completes[item_id].append(sent[-1])
    # conflict after a cut: the cut-off call went through (or the item moved on); forbidden / conflict without one:
    # the lease ran out while a kill held the agent up, and the item went to another agent (or to the DLQ)
    assert answer.error in (None, "conflict", "forbidden"), answer
    ledger.answers[f"complete:{answer.error or 'ok'}{':again' if again else ''}"] += 1


async def operate(agent: Agent, ledger: Ledger, phase: Phase, rng: random.Random) -> None:
    """List the DLQ, retry what was retried fewer than MAX_REQUEUES times, a few at once."""
    while not phase.draining:
        entries: list[str] = []
        cursor: str | None = None
        while True:
            args: dict[str, Any] = {"capability": CAP, "limit": 100, **({"cursor": cursor} if cursor else {})}
            page, _ = await agent.ask("dlq_list", "warp_dlq_list", args)
            assert page.error is None, page
            entries += [e["id"] for e in page.data["items"]]
            cursor = page.data.get("nextCursor")
            if not cursor:
                break
        todo = [item_id for item_id in entries if ledger.requeues[item_id] < MAX_REQUEUES][:RETRIES_AT_ONCE]
        if not todo:
            ledger.settled.clear()
            with contextlib.suppress(TimeoutError):  # dead letters also come from the server's mover
                await asyncio.wait_for(ledger.settled.wait(), 0.3)
            continue
        await asyncio.gather(*(retry(agent, item_id, ledger, rng) for item_id in todo))


async def retry(agent: Agent, item_id: str, ledger: Ledger, rng: random.Random) -> None:
    ledger.requeues[item_id] += 1
    reset = rng.random() < 0.5
    answer, again = await agent.ask("dlq_retry", "warp_dlq_retry", {"itemId": item_id, "resetAttempts": reset})
    outcome = answer.error or "requeued"
    if again:
        # sent again after a kill: requeued (the cut-off call had not got that far, or had left its requeue intent,
        # which this call finished), not_found (it had got to the end: the item was requeued)
        ledger.cut_retries[item_id] = outcome
        assert outcome in ("requeued", "not_found"), answer
    else:
        assert outcome == "requeued", answer
    ledger.answers[f"dlq_retry:{outcome}{':again' if again else ''}"] += 1
    assert answer.error is not None or answer.data == {"itemId": item_id, "requeued": True}, answer


class Tripwire:
    """Fires on the state write a serve process makes in the middle of a call: a DLQ retry's requeue intent, a
    claim's ``claimed`` record, a completion's ``done`` record, a fail's ``dead`` record (read from the KV stream as
    it is stored, with an ordered consumer, so a kill fired from here lands among the steps that follow the write)."""

    def __init__(self, layout: Layout, flight: Flight) -> None:
        self.prefix = f"$KV.{layout.work_state_bucket}."
        self.flight = flight
        self._armed: tuple[str, asyncio.Future[None]] | None = None
        self.intents: set[str] = set()
        """Requeue intents stored now (as far as the writes seen so far tell)."""
        self.taken_over = 0
        """Intents rewritten while stored: a retry left half done, taken over by a repeated call or the recovery."""

    async def seen(self, msg: Msg) -> None:
        key = msg.subject.removeprefix(self.prefix)
        deleted = (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE")
        if key.startswith("requeue."):
            if deleted:
                self.intents.discard(key)
            elif key in self.intents:
                self.taken_over += 1
            else:
                self.intents.add(key)
        if self._armed is None or deleted:
            return
        target, fired = self._armed
        if target == "dlq_retry":
            hit = key.startswith("requeue.")
        else:
            record = ItemRecord.decode(msg.data) if key.startswith("item.") else None
            hit = record is not None and record.state == WRITTEN[target]
        if hit and self.flight.counts[target] > 0 and not fired.done():
            self._armed = None
            fired.set_result(None)  # the killer runs next, before this process reads anything else

    async def wait(self, target: str) -> None:
        fired = asyncio.get_running_loop().create_future()
        self._armed = (target, fired)
        try:
            await fired
        finally:
            self._armed = None


async def kill_aimed(
    gateway: Gateway, flight: Flight, tripwire: Tripwire, rng: random.Random, kills: list[Kill], phase: Phase
) -> None:
    """KILLS times: wait for the standby, then for a call of the target kind — on even rounds for the state write in
    its middle, on odd ones for a random moment while one is under way — then SIGKILL the serving process."""
    for n in range(KILLS):
        target = TARGETS[n % len(TARGETS)]
        how = "state write" if (n // len(TARGETS)) % 2 == 0 else "in flight"
        await asyncio.wait_for(gateway.standby_ready(), 120)
        aimed = tripwire.wait(target) if how == "state write" else aim(flight, target, rng)
        await asyncio.wait_for(aimed, TARGET_WAIT_S)
        in_flight = flight.snapshot()  # no await between this and the kill
        victim = gateway.kill()
        kills.append(Kill(target, how, in_flight, victim.name, len(tripwire.intents)))
        await gateway.replace(victim)
    phase.kills_done = True


async def aim(flight: Flight, target: str, rng: random.Random) -> None:
    """Return at a random moment while a call of kind ``target`` is under way."""
    while True:
        await flight.busy(target)
        await asyncio.sleep(rng.uniform(0, JITTER_S))  # where inside the call the kill lands
        if flight.counts[target] > 0:
            return


# ---- the test --------------------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("slot", SLOTS)
async def test_serve_killed_mid_retry_claim_and_complete_loses_nothing_and_completes_once(
    tmp_path: Path, nats_server: NatsServer, slot: str, request: pytest.FixtureRequest
) -> None:
    seed = chaos_seed(slot)
    print(f"\nserver-kill {replay_hint(request.node.nodeid.partition('[')[0], seed)}")
    print(f"server-kill: {KILLS} kills, at least {ITEMS} items")
    rng = random.Random(seed)
    started = time.monotonic()
    layout = Layout(NS)
    key, _ = await api_key(tmp_path, nats_server.url, "chaos", "agent")
    gateway = Gateway(tmp_path, nats_server.url, ENV, replacements=KILLS)
    flight = Flight()
    ledger, phase, kills = Ledger(), Phase(), []
    nc = await nats.connect(nats_server.url)
    agents: list[Agent] = []
    try:
        await gateway.start()
        producer = Agent(gateway, key, "producer", flight)
        operator = Agent(gateway, key, "operator", flight)
        workers = [Agent(gateway, key, f"worker-{i}", flight) for i in range(WORKERS)]
        agents = [producer, operator, *workers]
        await asyncio.gather(register(producer), register(operator), *(register(w, CAP) for w in workers))

        roles = [
            asyncio.create_task(produce(producer, ledger, phase, random.Random(rng.random()))),
            asyncio.create_task(operate(operator, ledger, phase, random.Random(rng.random()))),
            *(asyncio.create_task(work(w, ledger, phase, random.Random(rng.random()))) for w in workers),
        ]
        tripwire = Tripwire(layout, flight)
        await nc.jetstream().subscribe(
            f"{tripwire.prefix}>", cb=tripwire.seen, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        killer = asyncio.create_task(kill_aimed(gateway, flight, tripwire, rng, kills, phase))
        try:
            await watch(killer, roles)
            run_s = time.monotonic() - started
            await watch(roles[0], roles)  # the producer stops once ITEMS were acknowledged

            # -- drain: no more failing or retrying; the workers take what is left until the stored state is final
            phase.draining = True
            js = nc.jetstream()
            last = ""

            async def final() -> bool:
                nonlocal last
                for task in roles:
                    if task.done():
                        task.result()  # an agent's assertion fails the test now
                store = await read_store(js, layout)
                items = known_items(ledger, store)
                last = store.describe(items)
                return store.final(items)

            await wait_for(final, DRAIN_S, interval=0.25, message=lambda: f"never settled: {last}")
            drain_s = time.monotonic() - started - run_s
        finally:
            phase.over = phase.draining = True
            killer.cancel()
            ended = await asyncio.gather(killer, *roles, return_exceptions=True)
        # an agent that failed after the last check fails the test as well (its error is not lost at teardown)
        late = [repr(e) for e in ended if isinstance(e, BaseException) and not isinstance(e, asyncio.CancelledError)]
        assert not late, f"agents failed after the final check: {late}"

        # -- the audit --------------------------------------------------------------------------------------------
        store = await read_store(nc.jetstream(), layout)
        items = known_items(ledger, store)
        audit(ledger, store, items)
    finally:
        for agent in agents:
            await agent.close()
        await gateway.close()
        await nc.close()

    hit = Counter[str]()
    for kill in kills:
        hit.update(kill.in_flight)
    assert len(kills) == KILLS
    assert all(hit[target] >= 1 for target in ("dlq_retry", "claim", "complete")), hit
    done = sum(1 for i in items if (r := store.records[i]) is not None and r.state == "done")
    cuts = sum((a.cuts for a in agents), Counter[str]())
    transient = sum((a.transient for a in agents), Counter[str]())
    sends = sum((a.sends for a in agents), Counter[str]())
    allowed = max(TRANSIENT_FLOOR, int(TRANSIENT_SHARE * sum(sends.values())))
    print(
        f"server-kill: {len(kills)} kills in {run_s:.1f} s, then drained in {drain_s:.1f} s "
        f"(total {time.monotonic() - started:.1f} s); in flight at each kill (target: counts): "
        f"{'; '.join(f'{k.target} ({k.how}): {k.in_flight}' for k in kills)}"
    )
    print(
        f"  requeue intents stored at the kills: {[k.intents for k in kills]}; intents taken over and finished: "
        f"{tripwire.taken_over}"
    )
    print(f"  serve launches took {', '.join(f'{t:.1f}' for t in gateway.launch_s)} s")
    print(f"  calls in flight at kills, summed: {dict(hit)}; calls cut off and sent again: {dict(cuts)}")
    print(
        f"  {len(items)} items ({len(ledger.acked)} acknowledged, {len(items) - len(ledger.acked)} from cut-off "
        f"broadcasts): {done} completed, {len(items) - done} dead-lettered; {sum(ledger.requeues.values())} DLQ "
        f"retries sent, cut-off retries answered {dict(Counter(ledger.cut_retries.values()))}"
    )
    print(f"  answers: {dict(sorted(ledger.answers.items()))}")
    print(f"  sends: {sum(sends.values())} {dict(sends)}; answered transiently and sent again: {dict(transient)}")
    assert sum(transient.values()) <= allowed, f"{dict(transient)} transient answers in {sum(sends.values())} sends"


async def watch(task: asyncio.Task[None], roles: list[asyncio.Task[None]]) -> None:
    """Wait for ``task``, failing at once if an agent fails meanwhile."""
    pending = {task, *roles}
    while not task.done():
        finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for done in finished:
            done.result()


def known_items(ledger: Ledger, store: Store) -> set[str]:
    """Acknowledged items, and items a cut-off broadcast made (known by a claim or a DLQ entry of its task)."""
    extra = {i for i, task in ledger.seen.items() if task in ledger.cut_tasks}
    extra |= {i for i, entries in store.dlq.items() if entries[0].workItem.taskId in ledger.cut_tasks}
    return set(ledger.acked) | extra


def audit(ledger: Ledger, store: Store, items: set[str]) -> None:
    phantom = {i: t for i, t in ledger.seen.items() if i not in items}
    assert not phantom, f"claims handed out items nobody broadcast: {phantom}"
    assert not store.intents, f"requeue intents left: {store.intents}"
    assert not store.other_keys, store.other_keys
    strays = set(store.submissions) - items
    assert not strays, f"submission records of no item: {sorted(strays)[:5]}"
    assert store.queued == 0, f"{store.queued} messages left in the work stream"
    orphans = set(store.records) - items
    assert not orphans, f"state records of no item: {sorted(orphans)[:5]}"
    assert set(store.dlq) <= items, f"DLQ entries of no item: {sorted(set(store.dlq) - items)[:5]}"
    twice = {i: len(e) for i, e in store.dlq.items() if len(e) != 1}
    assert not twice, f"dead-lettered more than once: {twice}"
    for item_id in items:
        record = store.records.get(item_id)
        oks = ledger.ok_completes.get(item_id, [])
        assert len(oks) <= 1, f"{item_id}: completion answered ok {len(oks)} times: {oks}"
        assert record is not None, f"{item_id}: no state record (lost)"
        if record.state == "done":
            assert item_id not in store.dlq, f"{item_id}: completed and dead-lettered"
            nonce = (record.result or {}).get("nonce")
            assert nonce in ledger.sent[item_id], f"{item_id}: completed with a result nobody sent: {record.result}"
            if oks:
                assert oks == [nonce], f"{item_id}: answered ok for {oks}, but {nonce} is the completion stored"
            else:
                assert nonce in ledger.unanswered[item_id], f"{item_id}: done by {nonce}, which was answered"
        else:
            assert record.state == "dead", f"{item_id}: left {record.state} ({record})"
            assert item_id in store.dlq, f"{item_id}: dead without a DLQ entry (lost)"
            assert not oks, f"{item_id}: answered ok for a completion, but dead-lettered"
            [entry] = store.dlq[item_id]
            assert entry.id == item_id and entry.workItem.capability == CAP
    for item_id in ledger.cut_retries:  # a retry cut off: the item ended up in exactly one place (checked above)
        assert item_id in items
