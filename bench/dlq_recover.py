"""DLQ recovery benchmark: how long a DLQ retry abandoned by a dying process stays unfinished, against a whole retry.

    .venv/bin/python bench/dlq_recover.py [--quick]

One real nats-server, two ``WorkService`` connections: A dead-letters items and begins their retries, B runs the
events mover as every ``nats-mcp serve`` does (``WorkEvents.start``). Each round A begins a retry and "dies" just
before publishing the copy (its publish raises: the intent is written, the DLQ entry taken), and the time from then
until B has finished the retry (the intent gone, the copy queued) is measured; beside it, the baseline of the
same run: a whole uninterrupted retry through A.
Rounds start at random moments of B's mover cycle. Prints medians, the maximum and the ratio, and writes
bench/results/dlq_recover.json. Before issue 21 item 6 an abandoned retry waited 15 to 45 s (an intent was taken
for abandoned after 15 s, and looked for every 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.natsserver import NatsServer, wait_for  # noqa: E402
from tests.support.work_service import CAP, caller, dead, service  # noqa: E402

from nats_mcp.bus.layout import Layout  # noqa: E402
from nats_mcp.coord.models import WorkItem  # noqa: E402
from nats_mcp.coord.work.dlq import RECOVER_AFTER_S  # noqa: E402
from nats_mcp.coord.work.events import RECOVER_EVERY_S, WorkEvents  # noqa: E402
from nats_mcp.coord.work.service import WorkService  # noqa: E402


async def crash(_item: WorkItem, _msg_id: str) -> None:
    raise RuntimeError("the process died before publishing the copy")


async def finished(work: WorkService, item_id: str) -> bool:
    try:
        await (await work.state.kv()).get(Layout.requeue_key(item_id))
    except Exception:  # gone: finished
        return int((await work.conn.jetstream.stream_info(work.layout.work_stream)).state.messages) == 1
    return False


async def drain(work: WorkService) -> None:
    me = caller()
    for item in await work.claim(me, CAP, max_items=10, timeout_ms=2000):
        await work.complete(me, item.id)


async def measure(a: WorkService, rounds: int) -> dict[str, object]:
    rng = random.Random(21)  # noqa: S311 (when rounds start)
    abandoned: list[float] = []
    whole: list[float] = []
    for _ in range(rounds):
        [item_id] = await dead(a, 1)
        t = time.perf_counter()
        await a.dlq_retry(item_id, reset_attempts=False)
        whole.append(time.perf_counter() - t)
        await drain(a)
        await asyncio.sleep(rng.uniform(0, 2.5))  # start at a random moment of B's mover cycle (not a sync)
        [left] = await dead(a, 1)
        with contextlib.suppress(RuntimeError):
            await a.dlq.retry(left, False, crash)
        t = time.perf_counter()
        await wait_for(lambda item_id=left: finished(a, item_id), timeout=60, interval=0.02)
        abandoned.append(time.perf_counter() - t)
        await drain(a)
    return {
        "rounds": rounds,
        "abandoned_median_s": round(statistics.median(abandoned), 3),
        "abandoned_max_s": round(max(abandoned), 3),
        "abandoned_min_s": round(min(abandoned), 3),
        "whole_retry_median_ms": round(statistics.median(whole) * 1e3, 2),
        "ratio_abandoned_to_whole_median": round(statistics.median(abandoned) / statistics.median(whole), 1),
        "recover_after_s": RECOVER_AFTER_S,
        "recover_every_s": RECOVER_EVERY_S,
    }


async def run(rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, NatsServer(Path(tmp) / "nats", jetstream=True) as server:
        async with service(Path(tmp) / "a", server) as a, service(Path(tmp) / "b", server) as b:
            events = WorkEvents(b.conn, b)
            events.start()
            try:
                return await measure(a, rounds)
            finally:
                await events.stop()


def main() -> None:
    logging.getLogger("nats_mcp").setLevel(logging.ERROR)  # each abandoned retry logs its interruption
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 12")
    args = parser.parse_args()
    result = asyncio.run(run(3 if args.quick else 12))
    for key, value in result.items():
        print(f"{key:34} {value}")
    out = ROOT / "bench" / "results" / "dlq_recover.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
