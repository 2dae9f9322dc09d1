"""Benchmark boundary of the fleet coordinator: how soon after work arrives an agent is started, and what it costs.

    .venv/bin/python bench/fleet.py [--quick] [--runs N]

One real nats-server, one `nats-mcp fleet run` (tick 0.2 s) with a target of examples/fleet_worker.py (max 2,
min 0, idle timeout 1 s). Per run, with no agent online:

a. baseline: the same worker started by hand, then one item offered: spawn -> item completed (what an agent
   costs to come up and do one item, with no coordinator involved);
b. fleet: one item offered to the idle fleet: offer -> the start decision (the issue's figure: within 2 s of the
   first broadcast), and offer -> item completed;

then it waits for the fleet to stop the agent again. Prints the medians and the ratio b(completed)/a; writes
bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.env import connected, isolated_env, nats_mcp_exe  # noqa: E402
from tests.support.fleet import SECRET, WORKER, agent_pids, store, worker_target, write_targets  # noqa: E402
from tests.support.natsserver import NatsServer, wait_for  # noqa: E402
from tests.support.work_service import caller  # noqa: E402

from nats_mcp.bus.layout import Layout  # noqa: E402
from nats_mcp.coord.work.service import WorkService  # noqa: E402

NS = "bench-fleet"
CAP = "python"
RESULTS = ROOT / "bench" / "results" / "fleet.json"


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def _offer(work: WorkService, n: int) -> None:
    await work.broadcast(caller(NS), task_id=f"b{n}", description="x", capability=CAP, priority=5)


async def _bench(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name, NatsServer(Path(tmp_name) / "nats").start() as server:
        tmp = Path(tmp_name)
        done = tmp / "done.log"
        targets = write_targets(
            tmp / "fleet.yaml",
            [worker_target("py", CAP, max_=2, log=done, work_ms=0, idleTimeoutS=1, min=0, pendingPerAgent=5)],
        )
        env = isolated_env(tmp, NATS_URL=server.url, NATS_MCP_NAMESPACE=NS, NATS_MCP_FLEET_TEST=NS, FLEET_SECRET=SECRET)
        baseline, to_start, to_done = [], [], []
        async with connected(tmp / "c", server.url, NATS_MCP_NAMESPACE=NS) as conn:
            work = WorkService(conn, conn.settings, Layout(NS))
            await work.ensure()
            # a. by hand: the worker alone
            for n in range(runs):
                had = _lines(done)
                hand_env = {
                    **env,
                    "NATS_MCP_FLEET_CAPABILITIES": CAP,
                    "FLEET_WORKER_LOG": str(done),
                    "NATS_MCP_SECURITY_AUDIT_ENABLED": "false",
                }
                began = time.perf_counter()
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, WORKER, env=hand_env, stderr=asyncio.subprocess.DEVNULL
                )
                await _offer(work, n)
                await wait_for(lambda had=had: _lines(done) > had, 60)
                baseline.append(time.perf_counter() - began)
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
            # b. the fleet
            with (tmp / "fleet.log").open("wb") as log:
                fleet = await asyncio.create_subprocess_exec(
                    nats_mcp_exe(), "fleet", "run", str(targets), "--tick", "0.2", env=env, stdout=log, stderr=log
                )
            try:
                kv = store(conn, NS)
                await wait_for(lambda: kv.info("leader"), 60)
                for n in range(runs):
                    had, seen = _lines(done), len(await kv.decisions())
                    began_wall, began = time.time(), time.perf_counter()
                    await _offer(work, 100 + n)

                    async def started(seen: int = seen) -> float | None:
                        new = [d for d in (await kv.decisions())[seen:] if d.action == "start"]
                        return new[0].at if new else None

                    at = await wait_for(started, 60)
                    to_start.append(max(at - began_wall, 0.0))
                    await wait_for(lambda had=had: _lines(done) > had, 60)
                    to_done.append(time.perf_counter() - began)
                    await wait_for(lambda: not agent_pids(NS), 60)  # stopped again: the next run starts cold
            finally:
                fleet.send_signal(signal.SIGTERM)
                await asyncio.wait_for(fleet.wait(), 30)
                for pid in agent_pids(NS):
                    os.killpg(pid, signal.SIGKILL)
    a, s, d = statistics.median(baseline), statistics.median(to_start), statistics.median(to_done)
    return {
        "runs": runs,
        "platform": platform.platform(),
        "baseline_worker_spawn_to_done_s": round(a, 3),
        "fleet_offer_to_start_decision_s": round(s, 3),
        "fleet_offer_to_done_s": round(d, 3),
        "ratio_fleet_done_vs_baseline": round(d / a, 2),
        "samples": {"baseline": baseline, "to_start": to_start, "to_done": to_done},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 runs")
    args = parser.parse_args()
    result = asyncio.run(_bench(2 if args.quick else args.runs))
    print(
        f"offer -> start decision: {result['fleet_offer_to_start_decision_s']:.3f} s (median of {result['runs']}); "
        f"offer -> done: {result['fleet_offer_to_done_s']:.3f} s vs {result['baseline_worker_spawn_to_done_s']:.3f} s "
        f"for a worker started by hand (x{result['ratio_fleet_done_vs_baseline']})"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
