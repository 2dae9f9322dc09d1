"""Boundary of `nats-mcp top` as scripts and operators use it: a real nats-server, state written by the domain
services, the command run as a process."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from nats_mcp.bus.layout import Layout
from nats_mcp.coord.channels import ChannelService
from nats_mcp.coord.context import Caller
from nats_mcp.coord.registry.service import RegistryService
from nats_mcp.coord.work.service import WorkService
from tests.support.env import connected
from tests.support.http_server import run_cli
from tests.support.natsserver import NatsServer

NS = "top-cli"
HOSTILE = "\x1b[2J\x1b]0;pwned\x07[bold red]boom[/bold red]"


async def seed(tmp_path: Path, url: str) -> tuple[str, str]:
    """One registered agent, one channel message (with terminal escapes and rich markup), one queued item."""
    async with connected(tmp_path / "seed", url, NATS_MCP_NAMESPACE=NS) as conn:
        layout = Layout(NS)
        caller = Caller(guid=uuid.uuid4().hex, namespace=NS, project_id="0123456789abcdef", owner="o")
        registry = RegistryService(conn, conn.settings, layout)
        await registry.start()
        try:
            await registry.register(
                caller, handle="builder", agent_type="worker", capabilities=["python"], scope="team"
            )
        finally:
            await registry.close()
        await ChannelService(conn, conn.settings, layout).send(caller, "builder", "roadmap", HOSTILE)
        work = WorkService(conn, conn.settings, layout)
        await work.ensure()
        item = await work.broadcast(caller, task_id="docs", description="write docs", capability="python")
        return caller.guid, item.id


async def test_top_once_json_and_text(tmp_path: Path, nats_server: NatsServer) -> None:
    guid, item_id = await seed(tmp_path, nats_server.url)
    env = {"NATS_URL": nats_server.url, "NATS_MCP_NAMESPACE": NS, "COLUMNS": "200"}

    code, out, error = await run_cli(tmp_path, "top", "--once", "--json", **env)
    assert code == 0, error
    snap = json.loads(out)
    assert snap["namespace"] == NS and snap["nats"]["connected"] is True and snap["errors"] == []
    [agent] = snap["agents"]["shown"]
    assert (agent["guid"], agent["handle"], agent["status"], agent["capabilities"]) == (
        guid,
        "builder",
        "online",
        ["python"],
    )
    [queue] = snap["queues"]
    assert (queue["capability"], queue["pending"], queue["inFlight"], queue["deadLettered"]) == ("python", 1, 0, 0)
    assert [(i["id"], i["state"]) for i in queue["items"]] == [(item_id, "pending")]
    roadmap = next(c for c in snap["channels"] if c["name"] == "roadmap")
    assert roadmap["messages"] == 1 and roadmap["recent"][0]["message"] == HOSTILE  # data, as stored
    assert snap["security"]["source"] == "stream"

    # The terminal view: the message's escapes are neutralised and its markup printed, not obeyed.
    code, out, error = await run_cli(tmp_path, "top", "--once", **env)
    assert code == 0, error
    assert "\x1b" not in out and "\x07" not in out
    assert "[bold red]boom[/bold red]" in out
    assert "builder" in out and "python" in out and "Work queues" in out

    code, _, error = await run_cli(tmp_path, "top", "--json", **env)
    assert code == 2 and "--json goes with --once" in error


async def test_top_without_nats_fails_clearly(tmp_path: Path) -> None:
    code, out, error = await run_cli(
        tmp_path,
        "top",
        "--once",
        "--json",
        NATS_URL="nats://127.0.0.1:1",
        NATS_MCP_NAMESPACE=NS,
        NATS_MCP_NATS_CONNECT_TIMEOUT_S="1",
    )
    assert code == 1 and out == ""
    assert "cannot reach NATS" in error
