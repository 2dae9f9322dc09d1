"""Work queues under crashing workers: 2,000 items, 8 worker processes that die, every item settled exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.coord.context import Caller
from nats_mcp.coord.models import DlqItem
from nats_mcp.coord.work.events import WorkEvents
from nats_mcp.coord.work.service import WorkService
from nats_mcp.coord.work.store import ItemRecord
from tests.chaos.work_worker import ANOMALY_BUCKET, CAPABILITY, DIED, DONE_BUCKET, INTENT_BUCKET, POISON
from tests.support.chaos_seed import SLOTS, chaos_seed, replay_hint
from tests.support.env import connected
from tests.support.natsserver import NatsServer, _pdeathsig_preexec, wait_for

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "chaos"
ITEMS = 2_000
POISONED = 10
"""Items that crash every claimer: the DLQ path is always taken, not only by the ~2 items chance sends there."""
WORKERS = 8
CRASH_RATE = 0.1
DIE_SHARE = 0.1
"""Of the crashes, the share that kills the worker process (the others drop the item and carry on)."""
STALL_RATE = 0.01
"""Items a worker completes only after its lease ran out (another agent may have taken them meanwhile)."""
ENV = {
    "NATS_MCP_NAMESPACE": NAMESPACE,
    "NATS_MCP_WORK_ACK_TIMEOUT_MS": "1000",
    "NATS_MCP_WORK_MAX_ATTEMPTS": "3",
    "NATS_MCP_WORK_RETRY_BACKOFF_MS": "300,600",
}
SETTLE_TIMEOUT_S = 200.0
RETRY_LIMIT = 20
"""Claims a worker may send again after NatsUnavailable (a slow NATS answer on a loaded machine), and errors the
mover may carry on past, each counted over the run and asserted: the workers' crashes never touch NATS, so these
stay rare (0 to a few in a run); more is an outage the retries would otherwise hide."""


@dataclass
class Pool:
    """Keeps ``size`` worker processes running: a worker that dies is replaced at once, until ``stop``."""

    url: str
    base: Path
    size: int
    seed: int
    spawned: int = 0
    deaths: int = 0
    stopping: bool = False
    events: Counter[str] = field(default_factory=Counter)
    crashed: list[tuple[str, str]] = field(default_factory=list)
    """(item id, "exit" or "abandon") per item a crash left unfinished."""
    done: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    watchers: set[asyncio.Task[None]] = field(default_factory=set)
    live: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)

    async def start(self) -> None:
        for _ in range(self.size):
            await self.spawn()

    async def spawn(self) -> None:
        n = self.spawned
        self.spawned += 1
        home = self.base / f"w{n}"
        home.mkdir(parents=True)
        argv = [
            "-m",
            "tests.chaos.work_worker",
            "--url",
            self.url,
            "--dir",
            str(home),
            "--namespace",
            NAMESPACE,
            "--seed",
            str(self.seed * 1000 + n),
            "--crash-rate",
            str(CRASH_RATE),
            "--die-share",
            str(DIE_SHARE),
            "--stall-rate",
            str(STALL_RATE),
            "--ack-timeout-ms",
            ENV["NATS_MCP_WORK_ACK_TIMEOUT_MS"],
            "--max-attempts",
            ENV["NATS_MCP_WORK_MAX_ATTEMPTS"],
            "--backoff-ms",
            ENV["NATS_MCP_WORK_RETRY_BACKOFF_MS"],
        ]
        with (self.base / f"w{n}.stderr").open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *argv,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                preexec_fn=_pdeathsig_preexec(),  # never outlives the test, even one killed hard
            )
        self.live[n] = proc
        task = asyncio.create_task(self.watch(n, proc))
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)

    async def watch(self, n: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            words = raw.decode(errors="replace").split()
            if not words:
                continue
            self.events[words[0]] += 1
            if words[0] == "CRASH":
                self.crashed.append((words[1], words[2]))
            elif words[0] == "DONE":
                self.done.append(words[1])
            elif words[0] == "ANOMALY":
                self.anomalies.append(" ".join(words[1:]))
        code = await proc.wait()
        del self.live[n]
        if self.stopping:
            return
        if code == DIED:
            self.deaths += 1
        else:
            tail = (self.base / f"w{n}.stderr").read_text(errors="replace")[-2000:]
            self.errors.append(f"worker {n} exited with {code}:\n{tail}")
        await self.spawn()

    async def stop(self) -> None:
        self.stopping = True
        for proc in list(self.live.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await asyncio.gather(*self.watchers)


async def run_mover(events: WorkEvents, failures: list[str]) -> None:
    """The background mover of one process: pokes the work consumers, turns max-delivery advisories into DLQ
    entries. A loaded machine may make a NATS call time out; the loop carries on, as the server's own does."""
    while True:
        try:
            await events.tick()
            await events.drain(wait_s=0.25)  # waits on the server for the next event, not a sleep
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures.append(repr(exc))
            await asyncio.sleep(0.1)


async def broadcast_all(work: WorkService, rng: random.Random) -> dict[str, str]:
    """Queue ITEMS items, mixed priorities 1..10; returns item id -> task id."""
    offerer = Caller(guid=uuid.uuid4().hex, namespace=NAMESPACE, project_id="0123456789abcdef", owner="o")
    tasks = [f"{POISON}{i}" if i < POISONED else f"task-{i}" for i in range(ITEMS)]
    rng.shuffle(tasks)
    ids: dict[str, str] = {}

    async def offer(task: str) -> None:
        priority = rng.randint(1, 10)
        item = await work.broadcast(
            offerer, task_id=task, description=f"do {task}", capability=CAPABILITY, priority=priority
        )
        ids[item.id] = task

    for first in range(0, ITEMS, 100):
        await asyncio.gather(*(offer(task) for task in tasks[first : first + 100]))
    return ids


async def all_dead_letters(work: WorkService) -> list[DlqItem]:
    found: list[DlqItem] = []
    cursor: str | None = None
    while True:
        page = await work.dlq.page(CAPABILITY, 100, cursor)
        found.extend(page.items)
        if not page.has_more:
            return found
        cursor = page.next_cursor


async def keys_present(kv: KeyValue, keys: list[str]) -> set[str]:
    async def present(key: str) -> str | None:
        try:
            await kv.get(key)
            return key
        except KeyNotFoundError:
            return None

    found: set[str] = set()
    for first in range(0, len(keys), 200):
        found.update(k for k in await asyncio.gather(*(present(k) for k in keys[first : first + 200])) if k)
    return found


async def stored(conn: NatsConnection, bucket: str) -> int:
    return int((await conn.jetstream.stream_info(f"KV_{bucket}")).state.messages)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("slot", SLOTS)
async def test_crashing_workers_settle_every_item_exactly_once(
    tmp_path: Path, nats_server: NatsServer, slot: str, request: pytest.FixtureRequest
) -> None:
    seed = chaos_seed(slot)
    print(f"\nchaos {replay_hint(request.node.nodeid.partition('[')[0], seed)}")
    rng = random.Random(seed)
    async with connected(tmp_path / "harness", nats_server.url, **ENV) as conn:
        layout = Layout(NAMESPACE)
        work = WorkService(conn, conn.settings, layout)
        await work.ensure()
        js = conn.jetstream
        kvs = {
            name: await js.create_key_value(KeyValueConfig(bucket=name))
            for name in (INTENT_BUCKET, DONE_BUCKET, ANOMALY_BUCKET)
        }
        ids = await broadcast_all(work, rng)
        assert len(ids) == ITEMS
        [queued] = await work.views.status(CAPABILITY)
        assert (queued.pending, queued.inFlight) == (ITEMS, 0)

        pool = Pool(nats_server.url, tmp_path / "workers", WORKERS, seed)
        events = WorkEvents(conn, work)
        mover_failures: list[str] = []
        started = time.monotonic()
        mover = asyncio.create_task(run_mover(events, mover_failures))
        last = ""
        try:
            await pool.start()

            async def settled() -> bool:
                nonlocal last
                assert not pool.errors, pool.errors[0]
                assert not pool.anomalies, pool.anomalies
                status = await work.views.status(CAPABILITY)
                done = await stored(conn, DONE_BUCKET)
                dead = status[0].deadLettered if status else 0
                last = f"{status}, {done} completions recorded, events {dict(pool.events)}"
                return bool(status) and status[0].pending == 0 and status[0].inFlight == 0 and done + dead == ITEMS

            await wait_for(settled, SETTLE_TIMEOUT_S, interval=0.2, message=lambda: f"work never settled: {last}")
            wall = time.monotonic() - started
        finally:
            await pool.stop()
            mover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mover

        # -- the audit --------------------------------------------------------------------------------
        keys = [f"item.{item_id}" for item_id in ids]
        completed = {k.removeprefix("item.") for k in await keys_present(kvs[DONE_BUCKET], keys)}
        dead_letters = await all_dead_letters(work)
        dead = {entry.id for entry in dead_letters}
        anomalies = await kvs[ANOMALY_BUCKET].keys() if await stored(conn, ANOMALY_BUCKET) else []
        assert not pool.errors, pool.errors
        assert anomalies == [] and pool.anomalies == [], (anomalies, pool.anomalies)
        assert pool.events["RETRY"] <= RETRY_LIMIT, f"{pool.events['RETRY']} claims sent again after NatsUnavailable"
        assert len(mover_failures) <= RETRY_LIMIT, mover_failures[:5]
        assert len(dead_letters) == len(dead), "an item was dead-lettered twice"
        assert not completed & dead, f"completed and dead-lettered: {sorted(completed & dead)[:5]}"
        lost = sorted(set(ids) - completed - dead)
        assert completed | dead == set(ids), f"neither completed nor dead-lettered: {lost}"
        assert len(completed) + len(dead) == ITEMS
        assert Counter(pool.done) == Counter(completed), "a completion was reported twice or not recorded"

        gate = asyncio.Semaphore(16)  # the final check reads every record: not all at once on a loaded machine

        async def record_of(item_id: str) -> tuple[ItemRecord | None, int]:
            async with gate:
                return await work.records.read(item_id)

        records = await asyncio.gather(*(record_of(item_id) for item_id in ids))
        states = Counter(record.state if record else None for record, _ in records)
        assert states == Counter({"done": len(completed), "dead": len(dead)}), states
        for item_id, (record, _) in zip(ids, records, strict=True):
            assert record is not None and record.state == ("done" if item_id in completed else "dead")

        poisoned = {item_id for item_id, task in ids.items() if task.startswith(POISON)}
        assert poisoned <= dead, "an item that crashed every claimer was not dead-lettered"
        kinds = Counter(kind for _, kind in pool.crashed)
        for entry in dead_letters:  # only crashes (or leases run out on a starved worker) send items there
            assert entry.reason == "max_attempts" and entry.attempts == 3, entry
            assert entry.workItem.id == entry.id and entry.workItem.capability == CAPABILITY
            assert sum("lease expired" in e for e in entry.errors) == 3, entry.errors
        [status] = await work.views.status(CAPABILITY)
        assert (status.pending, status.inFlight, status.deadLettered) == (0, 0, len(dead))
        assert (await js.stream_info(layout.work_stream)).state.messages == 0

    print(
        f"chaos: {len(completed)} completed, {len(dead)} dead-lettered ({len(poisoned)} poisoned), "
        f"{len(pool.crashed)} crashes ({pool.deaths} process deaths leaving {kinds['exit']} items, {kinds['abandon']} "
        f"items abandoned), {pool.events['STALL']} stalls past the lease ({pool.events['LOST']} completes refused), "
        f"{pool.spawned} worker processes, {pool.events['RETRY']} claims sent again, {len(mover_failures)} mover "
        f"errors, wall {wall:.1f} s"
    )
