"""Fleet coordinator processes for the tests: a targets file, `nats-mcp fleet run` children, what runs in /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import yaml

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.fleet.state import FleetStore
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer

WORKER = str(Path(__file__).resolve().parents[2] / "examples" / "fleet_worker.py")
SECRET = "fleet-secret-9f3c1e"
"""What the coordinators' environment holds for the worker target's ``API_TOKEN`` (fromEnv): never to be logged."""
COMMAND = [sys.executable.encode(), WORKER.encode()]


def write_targets(path: Path, targets: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "targets": targets}))
    return path


def worker_target(name: str, cap: str, *, max_: int, log: Path, work_ms: int, **kw: object) -> dict[str, object]:
    """A target running examples/fleet_worker.py under this interpreter, logging its completions to ``log``."""
    return {
        "name": name,
        "capabilities": [cap],
        "max": max_,
        "mechanism": "local",
        "local": {
            "command": [sys.executable, WORKER],
            "env": {
                "WORK_MS": {"value": str(work_ms)},
                "FLEET_WORKER_LOG": {"value": str(log)},
                "API_TOKEN": {"fromEnv": "FLEET_SECRET"},
                "NATS_MCP_SECURITY_AUDIT_ENABLED": {"value": "false"},  # the trail checked is the coordinator's
            },
            "stopTimeoutS": 5,
        },
        **kw,
    }


class Fleet:
    """One `nats-mcp fleet run` child process."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def metrics(self) -> dict[str, float]:
        """Its /metrics (the listener's address from its log), as series -> value."""
        found = re.search(r"metrics at (http://[0-9.:]+/metrics)", self.text())
        assert found, self.text()
        with urllib.request.urlopen(found.group(1), timeout=10) as answer:  # noqa: S310 - loopback http only
            lines = answer.read().decode().splitlines()
        return {k: float(v) for k, _, v in (line.rpartition(" ") for line in lines if not line.startswith("#"))}


@contextlib.asynccontextmanager
async def fleets(
    tmp_path: Path, server: NatsServer, namespace: str, targets: Path, count: int
) -> AsyncIterator[list[Fleet]]:
    """``count`` coordinators over ``targets``; on exit every coordinator and every agent they started is ended."""
    env = isolated_env(
        tmp_path, NATS_URL=server.url, NATS_MCP_NAMESPACE=namespace, NATS_MCP_FLEET_TEST=namespace, FLEET_SECRET=SECRET
    )
    started: list[Fleet] = []
    try:
        for k in range(count):
            log = tmp_path / f"fleet{k}.log"
            env["NATS_MCP_SECURITY_AUDIT_FILE"] = str(tmp_path / f"audit{k}.jsonl")
            with log.open("wb") as errlog:
                proc = await asyncio.create_subprocess_exec(
                    *(
                        nats_mcp_exe(),
                        "fleet",
                        "run",
                        str(targets),
                        "--tick",
                        "0.2",
                        "--lease",
                        "2",
                        "--metrics-port",
                        "0",
                    ),
                    env=env,
                    cwd=str(tmp_path),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=errlog,
                    stderr=errlog,
                )
            started.append(Fleet(proc, log))
        yield started
    finally:
        for fleet in started:
            if fleet.proc.returncode is None:
                fleet.proc.send_signal(signal.SIGTERM)
        for fleet in started:
            try:
                await asyncio.wait_for(fleet.proc.wait(), 15)
            except TimeoutError:
                fleet.proc.kill()
                await fleet.proc.wait()
        for pid in agent_pids(namespace):  # the agents of a killed coordinator outlive it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def agent_pids(namespace: str, target: str | None = None) -> list[int]:
    """Running (not zombie) agent processes a fleet of this test started (of ``target``): they carry its marker."""
    marker = f"NATS_MCP_FLEET_TEST={namespace}".encode()
    which = f"NATS_MCP_FLEET_TARGET={target}".encode() if target else b"NATS_MCP_FLEET_INSTANCE"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            env = (entry / "environ").read_bytes().split(b"\0")
            own = marker in env and which in b"\0".join(env) and not _zombie(stat)
            if own and (entry / "cmdline").read_bytes().split(b"\0")[:2] == COMMAND:  # not its serve child
                found.append(int(entry.name))
    return found


def _zombie(stat: str) -> bool:
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def store(conn: NatsConnection, namespace: str) -> FleetStore:
    return FleetStore(conn, Layout(namespace), 2.0)
