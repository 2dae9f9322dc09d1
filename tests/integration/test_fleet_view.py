"""Boundary of the fleet's read side: `nats-mcp fleet status` and the dashboard's fleet panel read what the fleet
state module wrote, and neither creates the fleet bucket where no fleet has run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.specs import fleet_bucket
from nats_mcp.cli.main import app
from nats_mcp.dashboard.data import Dashboard
from tests.support.env import isolated_env, settings_for
from tests.support.fleet_state import write_fleet_state
from tests.support.natsserver import NatsServer
from tests.support.work_service import caller, service

NS = "fleet-view"


async def fleet_status(tmp_path: Path, url: str, *args: str) -> tuple[int, str]:
    """`nats-mcp fleet status` in this process (its own event loop, in a thread: the test's loop is running)."""
    env = isolated_env(tmp_path / "cli", NATS_URL=url, NATS_MCP_NAMESPACE=NS)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["fleet", "status", *args], env=env)
    return result.exit_code, result.stdout if "--json" in args else result.stdout + result.stderr


async def test_status_and_dashboard_show_a_fleet_and_create_nothing_where_none_ran(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    settings = settings_for(
        tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE=NS, NATS_MCP_SECURITY_AUDIT_STREAM="false"
    )
    bucket = f"KV_{Layout(NS).fleet_bucket}"
    async with service(tmp_path, nats_server, base={"NATS_MCP_NAMESPACE": NS}) as work:
        conn = work.conn
        dash = Dashboard(conn, settings)
        try:

            async def streams() -> list[str]:
                return [s.config.name for s in await conn.jetstream.streams_info()]

            # No fleet has run: both say so (exit 0, an empty panel), and neither makes the bucket.
            code, text = await fleet_status(tmp_path, nats_server.url)
            assert code == 0 and f"namespace {NS}: no fleet has run in this namespace" in text, text
            code, text = await fleet_status(tmp_path, nats_server.url, "--json")
            assert code == 0 and json.loads(text) == {
                "namespace": NS,
                "fleet": False,
                "message": "no fleet has run in this namespace",
            }
            snap = await dash.build()
            assert snap["fleet"] is None and not snap["errors"], snap["errors"]
            assert bucket not in await streams()
            await Bucket.declared(conn, fleet_bucket(Layout(NS))).kv()  # as `nats-mcp provision` makes it: empty
            assert (await dash.build())["fleet"] is None
            assert (await fleet_status(tmp_path, nats_server.url, "--json"))[1].count('"fleet": false') == 1

            # A coordinator's state: 3 items wait for python.
            store = await write_fleet_state(conn, NS)
            for k in range(3):
                await work.broadcast(caller(NS), task_id=f"t{k}", description="x", capability="python")
            # One corporate item: only the target that may take that boundary counts it (as the coordinator does).
            await work.broadcast(caller(NS), task_id="c", description="x", capability="python", boundary="corporate")
            fleet = (await dash.build())["fleet"]
            assert fleet is not None
            py, docs = fleet["targets"]
            assert (py["name"], py["live"], py["starting"], py["max"], py["pending"]) == ("py", 1, 1, 2, 3)
            assert (docs["name"], docs["live"], docs["starting"], docs["pending"]) == ("docs", 0, 0, 4)
            assert fleet["leader"]["id"] == store.lease.owner and fleet["leader"]["active"]
            assert 0 < fleet["leader"]["leaseExpiresInS"] <= 30
            newest, oldest = fleet["decisions"]  # newest first, the reason clipped
            assert (newest["action"], newest["target"], newest["ok"], len(newest["reason"])) == (
                "start",
                "docs",
                False,
                200,
            )
            assert (oldest["target"], oldest["reason"], oldest["ok"]) == ("py", "3 pending, 0 agents", True)

            code, text = await fleet_status(tmp_path, nats_server.url, "--json")
            shown = json.loads(text)
            assert code == 0 and shown["fleet"] and shown["leader"]["active"]
            assert [(t["name"], t["live"], t["starting"], t["pending"]) for t in shown["targets"]] == [
                ("py", 1, 1, 3),
                ("docs", 0, 0, 4),
            ]
            assert {i["id"]: i["state"] for i in shown["targets"][0]["instances"]} == {
                "a1": "running",
                "b2": "starting",
            }
            assert shown["pending"]["python"]["pending"] == 4 and len(shown["decisions"]) == 2

            # The coordinator stops cleanly (lease given back): the panel no longer calls it active.
            await store.lease.release()
            leader = (await dash.build())["fleet"]["leader"]
            assert leader["id"] == store.lease.owner and not leader["active"] and leader["leaseExpiresInS"] is None
            code, text = await fleet_status(tmp_path, nats_server.url)
            assert code == 0 and "lease expired or released" in text and "py" in text, text
        finally:
            await dash.aclose()
