"""The chaos worker boundary: one agent process that claims work, sometimes crashes, and records each completion.

    python -m tests.chaos.work_worker --url URL --dir DIR --seed N [--crash-rate 0.1] [--die-share 0.1] ...

The worker is its own agent (a fresh ``Caller`` guid) with its own NatsConnection, and uses
``WorkService`` directly. It loops: claim one to ``--batch`` items; for each one, with probability
``--crash-rate`` (always, for a task id starting with :data:`POISON`) it "crashes" mid-item: with
probability ``--die-share`` the process really dies (``os._exit(DIED)``, no clean-up, every item it
holds abandoned), otherwise it just drops that item and carries on. Any other item is completed, after
a stall longer than the lease for a share ``--stall-rate`` of them (a slow agent: its item may go to
another agent meanwhile, and its own ``complete`` must then be refused):

1. an intent ``item.<id>`` is created, create-only, in :data:`INTENT_BUCKET`, BEFORE ``complete``;
   if one exists, two claims of the item overlap (one lease ran out): the worker waits until the
   other claimer withdraws its intent (its ``complete`` was refused) or records a success, and then
   calls ``complete`` all the same: it must be refused, or it is a double completion;
2. ``complete``; if refused (the lease ran out and the item went to another agent), the intent is
   withdrawn (deleted at the revision this worker wrote);
3. on success, ``item.<id>`` is created, create-only, in :data:`DONE_BUCKET`: a second success for
   the same item fails there, and is a double completion.

Anomalies are written to :data:`ANOMALY_BUCKET` and printed. Stdout carries one event per line
(``READY``, ``DONE``, ``STALL``, ``LOST``, ``CRASH``, ``ANOMALY``) for the harness in ``test_work_chaos``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import sys
from pathlib import Path

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from nats_mcp.bus.layout import Layout
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import Conflict, Forbidden, NatsUnavailable, NotFound
from nats_mcp.coord.models import WorkItem
from nats_mcp.coord.work.service import WorkService
from tests.support.env import connected

CAPABILITY = "chaos"
POISON = "poison-"
"""Items whose task id starts with this crash their claimer every time, so some always reach the DLQ."""
INTENT_BUCKET = "chaos_intent"
DONE_BUCKET = "chaos_done"
ANOMALY_BUCKET = "chaos_anomaly"
DIED = 17
"""Exit status of a deliberate death; any other exit is an error of the worker."""
INTENT_WAIT_S = 20.0
CLAIM_TIMEOUT_MS = 1000


def say(*words: object) -> None:
    print(*words, flush=True)


class Worker:
    def __init__(self, work: WorkService, me: Caller, buckets: dict[str, KeyValue], args: argparse.Namespace) -> None:
        self.work = work
        self.me = me
        self.intents = buckets[INTENT_BUCKET]
        self.done = buckets[DONE_BUCKET]
        self.anomalies = buckets[ANOMALY_BUCKET]
        self.rng = random.Random(args.seed)
        self.crash_rate: float = args.crash_rate
        self.die_share: float = args.die_share
        self.batch: int = args.batch
        self.stall_rate: float = args.stall_rate
        self.stall_s: float = args.ack_timeout_ms / 1000 * 1.5

    async def run(self) -> None:
        say("READY", self.me.guid)
        while True:
            try:
                items = await self.work.claim(
                    self.me, CAPABILITY, max_items=self.rng.randint(1, self.batch), timeout_ms=CLAIM_TIMEOUT_MS
                )
            except NatsUnavailable as exc:  # a slow answer on a loaded machine: the claim can be retried
                say("RETRY", "claim", type(exc).__name__)
                continue
            for n, item in enumerate(items):
                if item.taskId.startswith(POISON) or self.rng.random() < self.crash_rate:
                    if self.rng.random() < self.die_share:
                        for held in items[n:]:
                            say("CRASH", held.id, "exit")
                        os._exit(DIED)  # mid-item, with claims held: nothing is cleaned up
                    say("CRASH", item.id, "abandon")
                    continue
                await self.finish(item)

    async def finish(self, item: WorkItem) -> None:
        key = f"item.{item.id}"
        revision = await self.intend(item, key)
        if revision is None:
            return
        if self.rng.random() < self.stall_rate:
            say("STALL", item.id)
            await asyncio.sleep(self.stall_s)  # simulated slow work: the lease runs out meanwhile
        why = await self.complete(item)
        if why is not None:
            await self.intents.delete(key, last=revision)
            say("LOST", item.id, why)
            return
        try:
            await self.done.create(key, self.me.guid.encode())
        except KeyWrongLastSequenceError:
            await self.anomaly("double_completion", item.id, "complete succeeded for an item completed before")
            return
        say("DONE", item.id)

    async def complete(self, item: WorkItem) -> str | None:
        """None when this worker's complete went through; otherwise why not."""
        try:
            await self.work.complete(self.me, item.id, result={"by": self.me.guid})
            return None
        except (Forbidden, Conflict, NotFound) as exc:  # the lease ran out and the item went on
            return type(exc).__name__
        except NatsUnavailable:  # no answer in time: the state record says whether the completion happened
            record, _ = await self.work.records.read(item.id)
            if record is not None and record.state == "done" and record.claimer == self.me.guid:
                return None
            return "unanswered"

    async def intend(self, item: WorkItem, key: str) -> int | None:
        """Create the intent to complete (create-only): its revision, or None when this worker must not complete."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + INTENT_WAIT_S
        while True:
            try:
                return await self.intents.create(key, self.me.guid.encode())
            except KeyWrongLastSequenceError:
                pass
            # Another claimer wrote its intent: it lost the lease (and withdraws) or it completes, and then
            # this claim is the stale one (its lease ran out, say while a batch sibling took long).
            if await self.has(self.done, key):
                why = await self.complete(item)
                if why is None:
                    await self.anomaly(
                        "double_completion", item.id, f"complete succeeded again at attempt {item.attempts}"
                    )
                else:
                    say("LOST", item.id, f"stale-{why}")
                return None
            if loop.time() > deadline:
                await self.anomaly("intent_stuck", item.id, f"no outcome within {INTENT_WAIT_S} s")
                return None
            await asyncio.sleep(0.05)

    @staticmethod
    async def has(kv: KeyValue, key: str) -> bool:
        try:
            await kv.get(key)
            return True
        except KeyNotFoundError:  # also a deleted key
            return False

    async def anomaly(self, kind: str, item_id: str, detail: str) -> None:
        say("ANOMALY", kind, item_id, self.me.guid, detail)
        await self.anomalies.put(f"{kind}.{item_id}.{secrets.token_hex(4)}", f"{self.me.guid} {detail}".encode())


async def main(args: argparse.Namespace) -> None:
    env = {
        "NATS_MCP_NAMESPACE": args.namespace,
        "NATS_MCP_WORK_ACK_TIMEOUT_MS": str(args.ack_timeout_ms),
        "NATS_MCP_WORK_MAX_ATTEMPTS": str(args.max_attempts),
        "NATS_MCP_WORK_RETRY_BACKOFF_MS": args.backoff_ms,
    }
    async with connected(Path(args.dir), args.url, **env) as conn:
        layout = Layout(conn.settings.resolved_namespace)
        work = WorkService(conn, conn.settings, layout)
        me = Caller(guid=secrets.token_hex(16), namespace=layout.namespace, project_id="0123456789abcdef", owner="o")
        buckets = {name: await conn.jetstream.key_value(name) for name in (INTENT_BUCKET, DONE_BUCKET, ANOMALY_BUCKET)}
        await Worker(work, me, buckets, args).run()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--dir", required=True, help="private directory for the isolated settings (HOME, project)")
    parser.add_argument("--namespace", default="chaos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crash-rate", type=float, default=0.1)
    parser.add_argument("--die-share", type=float, default=0.1, help="share of crashes that kill the process")
    parser.add_argument("--batch", type=int, default=3, help="claim 1 to this many items at a time")
    parser.add_argument("--stall-rate", type=float, default=0.01, help="share of items worked on past the lease")
    parser.add_argument("--ack-timeout-ms", type=int, default=1000)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--backoff-ms", default="300,600")
    return parser.parse_args(argv)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parse(sys.argv[1:])))
