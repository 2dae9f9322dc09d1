"""Wait benchmark: how soon a waiting read (``waitMs``) answers after the matching message is published.

    .venv/bin/python bench/waits.py [--quick]

Starts its own nats-server and two connections (the waiter's server process and the sender's). Each round
parks one wait — a channel read after the last sequence, then an inbox read filtered to a thread — waits until
it is parked, then publishes from the other connection and takes the time from the start of the publish to the
wait's answer. Then 500 waits at once on one channel and one publish (a few rounds): the time until each one
answers, and how many NATS requests the wake made (one read shared by all: 2). The
baseline, measured in the same run and rounds, is one plain read that finds the new message (what a client
polling at no interval at all would spend per look): the ratio says how much a wake costs on top of that.
Target (issue 23): a wait answers within 50 ms (p95) of the publish. Prints a table and writes
bench/results/waits.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.natsserver import NatsServer  # noqa: E402

from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.bus.layout import Layout  # noqa: E402
from nats_mcp.config.coordination import ChannelSettings  # noqa: E402
from nats_mcp.config.loader import load_settings  # noqa: E402
from nats_mcp.config.settings import Settings  # noqa: E402
from nats_mcp.coord.channels import ChannelPage, ChannelService  # noqa: E402
from nats_mcp.coord.context import Caller  # noqa: E402
from nats_mcp.coord.inbox import InboxPage, InboxService  # noqa: E402
from nats_mcp.coord.models import AgentRecord  # noqa: E402
from nats_mcp.coord.waits import Waits  # noqa: E402

NS = "bench"
LAYOUT = Layout(NS)
TARGET_MS = 50.0
WAIT_MS = 10_000
FANOUT = 500


def stats(samples: list[float]) -> dict[str, float]:
    s = sorted(x * 1e3 for x in samples)
    return {
        "p50_ms": round(statistics.median(s), 3),
        "p95_ms": round(s[min(len(s) - 1, int(len(s) * 0.95))], 3),
        "max_ms": round(s[-1], 3),
        "n": len(s),
    }


def row(measure: str, wake: list[float], baseline: list[float]) -> dict[str, Any]:
    w, b = stats(wake), stats(baseline)
    return {
        "measure": measure,
        **w,
        "baseline": f"one read that finds the message: p95 {b['p95_ms']} ms",
        "baseline_p95_ms": b["p95_ms"],
        "ratio": round(w["p95_ms"] / b["p95_ms"], 2) if b["p95_ms"] else None,
        "target": f"p95 <= {TARGET_MS:g} ms",
        "met": w["p95_ms"] <= TARGET_MS,
    }


def agent() -> tuple[Caller, AgentRecord]:
    guid = uuid.uuid4().hex
    caller = Caller(guid=guid, namespace=NS, project_id="0" * 16, owner="bench")
    record = AgentRecord(
        guid=guid,
        namespace=NS,
        handle=f"a-{guid[:6]}",
        agentType="bench",
        lastHeartbeat="2026-01-01T00:00:00.000Z",
        registeredAt="2026-01-01T00:00:00.000Z",
    )
    return caller, record


async def parked(waits: Waits, count: int) -> None:
    while waits.pending < count:  # the bench's own start line, not a measured quantity  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def timed(task: Callable[[], Awaitable[Any]], ended: list[float]) -> Any:
    result = await task()
    ended.append(time.perf_counter())
    return result


async def measure(settings: Settings, rounds: int) -> dict[str, Any]:
    waiter_conn, sender_conn = NatsConnection(settings), NatsConnection(settings)
    for conn in (waiter_conn, sender_conn):
        conn.start()
        assert await conn.wait_connected(10)
    try:
        channels, sender = ChannelService(waiter_conn, settings, LAYOUT), ChannelService(sender_conn, settings, LAYOUT)
        inbox, inbox_sender = InboxService(waiter_conn, settings), InboxService(sender_conn, settings)
        waits = Waits(waiter_conn, LAYOUT)
        await channels.ensure_streams()
        me, my_record = agent()
        them, _ = agent()
        last = (await sender.send(them, "them", "bench", "start")).sequence
        thread = (await inbox_sender.send(them, "them", my_record, content="start")).threadId
        await inbox.read(me)

        def found(page: ChannelPage | InboxPage) -> bool:
            return bool(page.messages)

        out: dict[str, list[float]] = {k: [] for k in ("channel", "channel_read", "inbox", "inbox_read", "fanout")}
        for r in range(rounds + 1):  # round 0 warms up
            # channel: one wait, one publish
            after = last

            async def channel_read(after: int = after) -> ChannelPage:
                return await channels.read(me, "bench", after_sequence=after)

            ended: list[float] = []
            task = asyncio.create_task(timed(lambda: waits.channel("bench", channel_read, found, WAIT_MS), ended))
            await parked(waits, 1)
            start = time.perf_counter()
            last = (await sender.send(them, "them", "bench", f"m{r}")).sequence
            assert (await task).messages[-1].sequence == last
            t = time.perf_counter()
            await channel_read()  # the baseline: one read that finds the message
            if r:
                out["channel"].append(ended[0] - start)
                out["channel_read"].append(time.perf_counter() - t)

            # inbox: one wait filtered to a thread, one DM in it
            async def inbox_read() -> InboxPage:
                return await inbox.read(me, thread_id=thread)

            ended = []
            task = asyncio.create_task(timed(lambda: waits.inbox(me, inbox_read, found, WAIT_MS), ended))
            await parked(waits, 1)
            start = time.perf_counter()
            await inbox_sender.send(them, "them", my_record, content=f"d{r}", thread_id=thread)
            assert len((await task).messages) == 1
            await inbox_sender.send(them, "them", my_record, content=f"e{r}", thread_id=thread)
            t = time.perf_counter()
            assert len((await inbox_read()).messages) == 1  # the baseline: one read that finds (and takes) it
            if r:
                out["inbox"].append(ended[0] - start)
                out["inbox_read"].append(time.perf_counter() - t)

        # 500 waits on one channel, one publish: when each answers (a few rounds: one slow store is one round)
        requests = 0
        for _ in range(max(3, rounds // 20)):
            after = last

            async def fan_read(after: int = after) -> ChannelPage:
                return await channels.read(me, "bench", after_sequence=after)

            async def fan_wait(fan_read: Callable[[], Awaitable[ChannelPage]] = fan_read, key: int = after) -> Any:
                return await waits.channel("bench", fan_read, found, WAIT_MS, key=key)

            ended = []
            tasks = [asyncio.create_task(timed(fan_wait, ended)) for _ in range(FANOUT)]
            await parked(waits, FANOUT)
            before = waiter_conn.client.stats["out_msgs"]
            start = time.perf_counter()
            last = (await sender.send(them, "them", "bench", "all of you")).sequence
            await asyncio.gather(*tasks)
            out["fanout"] += [e - start for e in ended]
            requests = max(requests, waiter_conn.client.stats["out_msgs"] - before)
        fanout = row(f"{FANOUT} channel waits, one publish", out["fanout"], out["channel_read"])
        fanout["nats_requests"] = requests  # the most one wake made (one shared read: 2)
        await waits.close()
        return {
            "channel": row("channel wait wake", out["channel"], out["channel_read"]),
            "inbox": row("inbox thread wait wake", out["inbox"], out["inbox_read"]),
            "fanout": fanout,
            "load_average": list(os.getloadavg()),
        }
    finally:
        for conn in (waiter_conn, sender_conn):
            await conn.close()


async def run(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, NatsServer(Path(tmp) / "nats", jetstream=True) as server:
        settings = load_settings(environ={"HOME": tmp, "NATS_URL": server.url}).settings
        channel = ChannelSettings(name="bench", description="bench", max_messages=100_000, max_bytes=64 << 20)
        return await measure(settings.model_copy(update={"channels": [channel]}), rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(30 if args.quick else 200))
    print(f"{'measure':<34}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'read p95':>10}{'ratio':>7}  verdict")
    for r in (results["channel"], results["inbox"], results["fanout"]):
        verdict = f"{r['target']} {'ok' if r['met'] else 'MISSED'}"
        print(
            f"{r['measure']:<34}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}{r['max_ms']:>9.2f}"
            f"{r['baseline_p95_ms']:>10.2f}{r['ratio']:>7}  {verdict}"
        )
    print(f"{FANOUT} waits woken by one publish made at most {results['fanout']['nats_requests']} NATS requests")
    print(f"load average at the end: {results['load_average']}")
    out = ROOT / "bench" / "results" / "waits.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
