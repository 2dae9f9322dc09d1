"""Boundary of the fleet coordinator as operators run it: real `nats-mcp fleet run` processes starting real agents
(examples/fleet_worker.py, MCP over stdio to `nats-mcp serve`) against a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nats_mcp.coord.work.views import WorkViews
from nats_mcp.fleet.state import FleetStore
from tests.support.audit import audit_records
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.fleet import SECRET, agent_pids, fleets, store, worker_target, write_targets
from tests.support.natsserver import NatsServer, wait_for
from tests.support.work_service import caller, service

NS = "fleet-e2e"
ITEMS = 20
MAX = 2


@pytest.mark.slow
async def test_scale_up_failover_exactly_once_scale_down_and_crash_backoff(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    done_log = tmp_path / "done.log"
    targets = write_targets(
        tmp_path / "fleet.yaml",
        [
            worker_target(
                "py",
                "python",
                max_=MAX,
                log=done_log,
                work_ms=20,
                pendingPerAgent=5,
                idleTimeoutS=1,
                min=0,
                startupGraceS=60,
            ),
            {
                "name": "crashy",
                "capabilities": ["crashy"],
                "min": 1,
                "max": MAX,
                "restartBackoffS": 0.2,
                "restartBackoffMaxS": 0.8,
                "mechanism": "local",
                "local": {"command": [sys.executable, "-c", "import sys; sys.exit(3)"]},
            },
        ],
    )
    async with (
        service(tmp_path, nats_server, base={"NATS_MCP_NAMESPACE": NS}) as work,
        fleets(tmp_path, nats_server, NS, targets, 2) as procs,
    ):
        kv = store(work.conn, NS)
        leader = await wait_for(lambda: kv.info("leader"), 30, message="no fleet coordinator became active")
        offered = set()
        for k in range(ITEMS):
            item = await work.broadcast(caller(NS), task_id=f"t{k}", description="x", capability="python", priority=5)
            offered.add(item.id)

        most = {"py": 0, "crashy": 0, "procs": 0}
        sampling = True
        got_secret: set[bool] = set()

        async def sample() -> None:
            while sampling:
                records = await kv.instances()
                for name in ("py", "crashy"):
                    most[name] = max(most[name], sum(1 for r in records if r.target == name))
                running = agent_pids(NS, "py")
                most["procs"] = max(most["procs"], len(running))
                for pid in running:  # the secret reaches the agent, by its environment only
                    with contextlib.suppress(OSError):
                        got_secret.add(f"API_TOKEN={SECRET}".encode() in Path(f"/proc/{pid}/environ").read_bytes())
                await asyncio.sleep(0.02)  # a sampling period, not a synchronisation

        sampler = asyncio.create_task(sample())
        try:
            # mid-scale-up: the first agent is recorded; SIGKILL the active coordinator
            await wait_for(
                lambda: _count(kv, "py"), 60, message=lambda: "no agent started:\n" + procs[0].text() + procs[1].text()
            )
            active = next(p for p in procs if p.proc.pid == leader["pid"])
            standby = next(p for p in procs if p is not active)
            active.proc.send_signal(signal.SIGKILL)
            await active.proc.wait()

            async def new_leader() -> object:
                now = await kv.info("leader")
                return now if now and now["id"] != leader["id"] else None

            took_over = await wait_for(new_leader, 20, message=lambda: "no takeover:\n" + standby.text())
            assert took_over["pid"] == standby.proc.pid

            # every item completes exactly once, across the failover
            await wait_for(lambda: len(_lines(done_log)) >= ITEMS, 90, message=lambda: f"{len(_lines(done_log))} done")
            # idle: the new leader stops the agents (the dead leader's too, by pid), down to min 0
            await wait_for(
                lambda: not agent_pids(NS, "py"), 60, message=lambda: "agents not stopped:\n" + standby.text()
            )
            await wait_for(lambda: _count(kv, "py", zero=True), 10, message="instance records left")
        finally:
            sampling = False
            await sampler

        lines = _lines(done_log)
        assert len(lines) == ITEMS
        assert {line.split()[0] for line in lines} == offered
        queues = {q.capability: q for q in await WorkViews(work).status()}
        assert (queues["python"].pending, queues["python"].inFlight) == (0, 0)
        assert most["py"] <= MAX and most["procs"] <= MAX and most["crashy"] <= MAX
        assert most["py"] >= 1 and most["procs"] >= 1

        decisions = await kv.decisions()
        # KV keeps the last 100 decisions, and the crashing target fills them on a slow run: the whole story of the
        # py target is read from both coordinators' audit trails
        py = [
            (r["tool"], r["reason"])
            for i in range(len(procs))
            for r in audit_records(tmp_path / f"audit{i}.jsonl")
            if r.get("kind") == "fleet_decision" and str(r.get("reason", "")).startswith("py/")
        ]
        assert any(tool == "fleet_start" and "pending" in why for tool, why in py), py
        assert any(tool == "fleet_stop" and "idle" in why for tool, why in py), py
        # the crashes too: the first ones (0.2 s, 0.4 s) can have left KV's last 100 by the end of a slow run
        crashes = [
            (r["reason"], r.get("outcome"))
            for i in range(len(procs))
            for r in audit_records(tmp_path / f"audit{i}.jsonl")
            if r.get("tool") == "fleet_crashed" and str(r.get("reason", "")).startswith("crashy/")
        ]
        assert len(crashes) >= 2 and all("exit code 3" in why and outcome == "failed" for why, outcome in crashes)
        assert {why.rsplit("no restart for ", 1)[1] for why, _ in crashes} >= {"0.2s", "0.4s"}

        # every decision is an audit record of the coordinator that made it (no environment values in it)
        trail = audit_records(tmp_path / f"audit{procs.index(standby)}.jsonl")
        fleet_records = [r for r in trail if r.get("kind") == "fleet_decision"]
        assert {r["tool"] for r in fleet_records} >= {"fleet_start", "fleet_stop", "fleet_crashed"}
        assert got_secret == {True}
        # nothing secret in the logs, the audit or the fleet's KV state
        kept = json.dumps([r.encode().decode() for r in await kv.instances()]) + json.dumps(
            [d.__dict__ for d in decisions]
        )
        for text in (procs[0].text(), procs[1].text(), json.dumps(trail), kept):
            assert SECRET not in text

        # the metrics of the coordinator that took over
        series = standby.metrics()
        assert series['nats_mcp_fleet_stops_total{target="py"}'] >= 1
        assert series['nats_mcp_fleet_failures_total{target="crashy"}'] >= 1
        assert series["nats_mcp_fleet_leader"] == 1
        assert series["nats_mcp_fleet_decision_duration_seconds_count"] >= 1

        # what people see
        env = isolated_env(tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE=NS)
        shown = subprocess.run(
            [nats_mcp_exe(), "fleet", "status", "--json"], env=env, capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert status["leader"]["id"] == took_over["id"]
        assert {t["name"] for t in status["targets"]} == {"py", "crashy"}
        assert any(d["action"] == "crashed" for d in status["decisions"])
    assert not agent_pids(NS)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _count(kv: FleetStore, target: str, *, zero: bool = False) -> bool:
    records = [r for r in await kv.instances() if r.target == target]
    return not records if zero else bool(records)
