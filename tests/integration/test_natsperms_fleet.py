"""Least privilege for the fleet coordinator against a real nats-server: `nats-mcp fleet run` under exactly the
`fleet` role's generated permissions takes its lease and makes a start decision with no refusal, a gateway user reads
the fleet for the dashboard, and neither an agent nor a gateway user may write its bucket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from nats_mcp.bus.layout import AUDIT_STREAM, Layout, audit_writer
from nats_mcp.coord.work.service import WorkService
from nats_mcp.fleet.state import FleetStore
from nats_mcp.fleet.view import read_fleet
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.fleet import Fleet
from tests.support.natsperms import NS, USERS, PermsNatsServer, Raw, connection, provision
from tests.support.natsserver import wait_for
from tests.support.work_service import caller

MARKER = "PERMS_FLEET_TEST"


@pytest.fixture
def perms_server(tmp_path: Path) -> Iterator[PermsNatsServer]:
    server = PermsNatsServer(tmp_path / "nats-perms")
    try:
        server.start()
        yield server
    finally:
        server.close()


def _sleepers() -> list[int]:
    """The agent processes this test's coordinator started (they carry the marker), to end them whatever happens."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            marked = entry.name.isdigit() and f"{MARKER}=1".encode() in (entry / "environ").read_bytes().split(b"\0")
            if marked and os.getsid(int(entry.name)) == int(entry.name):
                found.append(int(entry.name))
    return found


async def test_fleet_run_works_under_the_fleet_role_and_agents_cannot_write_its_bucket(
    tmp_path: Path, perms_server: PermsNatsServer
) -> None:
    server = perms_server
    await provision(tmp_path, server)
    targets = tmp_path / "fleet.yaml"
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]  # never comes online: one start is enough
    target = {"name": "py", "capabilities": ["python"], "max": 1, "mechanism": "local", "local": {"command": sleeper}}
    targets.write_text(yaml.safe_dump({"version": 1, "targets": [target]}))
    fleet = USERS["fleet"].perms
    env = isolated_env(
        tmp_path / "fleet",
        NATS_URL=server.url_for("fleet"),
        NATS_MCP_NAMESPACE=NS,
        NATS_MCP_NATS_INBOX_PREFIX=fleet.inbox_prefix,
        **{MARKER: "1"},
    )
    log = tmp_path / "fleet.log"
    async with connection(tmp_path, server, "agent-a", NS) as agent:
        work = WorkService(agent, agent.settings, Layout(NS))
        await work.broadcast(caller(NS), task_id="t1", description="x", capability="python")
    with log.open("wb") as out:
        command = [nats_mcp_exe(), "fleet", "run", str(targets), "--tick", "0.2", "--lease", "2", "--metrics-port", "0"]
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        async with connection(tmp_path, server, "admin", NS) as admin:
            store = FleetStore(admin, Layout(NS), 2.0, create=False)

            async def started() -> bool:
                return any(d.action == "start" and d.ok for d in await store.decisions())

            await wait_for(started, 60, message=lambda: "no start decision:\n" + log.read_text(errors="replace"))
            leader = await store.info("leader")
            assert leader["pid"] == proc.pid
            assert [(r.target, r.leader) for r in await store.instances()] == [("py", leader["id"])]
        # what --metrics-port exports: starts, stops, failures, decisions, the round's latency, leadership
        series = Fleet(proc, log).metrics()
        assert series['nats_mcp_fleet_starts_total{target="py"}'] == 1
        assert series['nats_mcp_fleet_stops_total{target="py"}'] == 0  # exported before the first stop
        assert series['nats_mcp_fleet_failures_total{target="py"}'] == 0
        assert series['nats_mcp_fleet_decisions_total{action="start",target="py"}'] == 1
        assert series["nats_mcp_fleet_decision_duration_seconds_count"] >= 1 and series["nats_mcp_fleet_leader"] == 1
        async with connection(tmp_path, server, "gateway", NS) as gateway:  # the dashboard's read, as a gateway
            shown = await read_fleet(gateway, Layout(NS), time.time())
            assert shown is not None and [t["name"] for t in shown["targets"]] == ["py"] and gateway.errors == []
        assert server.violations() == [], server.violations()
        proc.send_signal(signal.SIGTERM)  # a clean stop: its instance stopped, its lease given back
        assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text(errors="replace")
        text = log.read_text(errors="replace")
        assert "fleet round failed" not in text and "violation" not in text.lower(), text
        assert server.violations() == []
        async with connection(tmp_path, server, "admin", NS) as admin:  # its decisions are audited, as its own writer
            writer = audit_writer(fleet.inbox_prefix)
            info = await admin.jetstream.stream_info(AUDIT_STREAM, subjects_filter=f"nmcp.audit.{writer}.>")
            assert info.state.subjects, "no audit record under the fleet user's writer"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in _sleepers():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    # Negative: an agent user and a gateway user may not write the coordinator's bucket (nor an agent read it).
    bucket = Layout(NS).fleet_bucket
    async with Raw.of(server, "agent-a") as raw:
        await raw.refused_request(f"$KV.{bucket}.lock.fleet", {"owner": "me", "expiresAt": 9e9})
        await raw.refused_request(f"$KV.{bucket}.inst.py.x", b"{}")
        await raw.refused_request(f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.leader")
    async with Raw.of(server, "gateway") as raw:
        await raw.refused_request(f"$KV.{bucket}.decisions", b"[]")
