"""Boundary between the fleet engine and the kubernetes mechanism: the real engine, KV and work queue on a real
nats-server; the cluster is the FAKE of tests/support/kube.py (there is none here). One scenario: pending work
starts a Job, the handle goes through KV and back, a crash (the pod's exit code) sets the backoff, the next start
comes after it, a successor coordinator adopts the Job from KV and stops it; no secret in the audit or KV."""

from __future__ import annotations

import json
import time
from pathlib import Path

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.coord.service import Coordinator
from nats_mcp.fleet.engine import EnvFor, FleetEngine
from nats_mcp.fleet.kubernetes import KubernetesMechanism
from nats_mcp.fleet.local import LocalMechanism
from nats_mcp.fleet.mechanism import Mechanism
from nats_mcp.fleet.metrics import FleetMetrics
from nats_mcp.fleet.targets import parse_targets
from tests.support.env import settings_for
from tests.support.guard import Recorder
from tests.support.kube import FakeCluster
from tests.support.natsserver import NatsServer
from tests.support.work_service import caller

NS = "fleet-kube"
SECRET = "kube-secret-5e1d"
TARGETS = """
version: 1
targets:
  - name: kjobs
    capabilities: [kube]
    max: 1
    restartBackoffS: 0.3
    restartBackoffMaxS: 0.3
    startupGraceS: 60
    mechanism: kubernetes
    kubernetes:
      namespace: agents
      image: agent:1
      env: {API_TOKEN: {fromEnv: KUBE_TOKEN}}
"""


def engine(coordinator: Coordinator, cluster: FakeCluster, audit: Recorder) -> FleetEngine:
    doc = parse_targets(TARGETS)
    spec = doc.targets[0].kubernetes
    assert spec is not None
    kube = KubernetesMechanism({"kjobs": spec}, {"KUBE_TOKEN": SECRET}, apis=cluster.apis, poll_every_s=0)
    mechanisms: dict[str, Mechanism] = {"local": LocalMechanism({}), "kubernetes": kube}
    env = EnvFor({"NATS_MCP_NAMESPACE": NS, "NATS_URL": "nats://nats:4222"}, {})
    return FleetEngine(coordinator, doc, mechanisms, audit, FleetMetrics(), env, tick_s=0.1, lease_ttl_s=1.0)


async def rounds_until(fleet: FleetEngine, action: str, deadline_s: float = 10.0) -> str:
    """Rounds (as the active coordinator) until one decides ``action``; its reason."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        fleet._lead(await fleet.store.lease.acquire())
        for decision in await fleet.round():
            if decision.action == action:
                assert decision.ok or action == "crashed", decision.reason  # a crash is recorded as not ok
                return decision.reason
    raise AssertionError(f"no {action} decision within {deadline_s}s")


async def test_jobs_start_crash_back_off_and_a_successor_stops_them(tmp_path: Path, nats_server: NatsServer) -> None:
    settings = settings_for(tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE=NS)
    conn = NatsConnection(settings)
    coordinator = Coordinator(conn, settings)
    conn.add_listener(coordinator.on_nats_event)
    conn.start()
    cluster, audit = FakeCluster(), Recorder()
    try:
        assert await coordinator.wait_ready(20), coordinator.setup_error
        await coordinator.work.broadcast(caller(NS), task_id="t", description="d", capability="kube")
        first = engine(coordinator, cluster, audit)

        await rounds_until(first, "start")
        [record] = await first.store.instances()
        assert record.handle is not None and record.handle.mechanism == "kubernetes"
        job = cluster.objects["Job", "agents", record.handle.ref["name"]]
        assert record.handle.ref["uid"] == job["metadata"]["uid"] and job["spec"]["suspend"] is False
        env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["LOOMINAL_AGENT_ID"]["value"] == record.agent_guid
        assert env["NATS_MCP_FLEET_CAPABILITIES"]["value"] == "kube"
        assert "valueFrom" in env["API_TOKEN"] and SECRET not in json.dumps(job)

        job["status"] = {"conditions": [{"type": "Failed", "status": "True"}]}
        cluster.pods = [
            {"status": {"containerStatuses": [{"name": "agent", "state": {"terminated": {"exitCode": 3}}}]}}
        ]
        reason = await rounds_until(first, "crashed")
        assert reason.startswith("crashed (exit code 3, 1 in a row); no restart for 0.3s")
        assert await first.store.instances() == []

        await rounds_until(first, "start")  # after the backoff
        [record] = await first.store.instances()
        assert record.handle is not None
        name = record.handle.ref["name"]
        assert ("Job", "agents", name) in cluster.objects and ("Secret", "agents", f"{name}-env") in cluster.objects

        # A successor (another process: its own mechanism, the handle read back from KV) stops it.
        await first.store.lease.release()
        first._lead(False)
        second = engine(coordinator, cluster, audit)
        second._lead(await second.store.lease.acquire())
        [adopted] = await second.store.instances()
        assert adopted.handle == record.handle
        await second.mechanisms["kubernetes"].stop(adopted.handle)
        assert ("Job", "agents", name) not in cluster.objects
        assert ("Secret", "agents", f"{name}-env") not in cluster.objects  # by the garbage collector
        assert [r["tool"] for r in audit.records] == ["fleet_start", "fleet_crashed", "fleet_start"]
        assert SECRET not in json.dumps(audit.records, default=str)
        await second.store.lease.release()
    finally:
        await coordinator.close()
        await conn.close()
