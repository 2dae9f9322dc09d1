"""Boundary of the human CLI as a person (or a script) meets it: `nats-mcp agents|channels|work|dlq` next to agents
served by a real `nats-mcp serve`, on a real nats-server; JSON output, exit codes, the audit trail."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import NS, cli, cli_json, trail
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer, wait_for
from tests.support.stdio import agent, err, ok
from tests.support.work_tools import claim, register

pytestmark = pytest.mark.slow


async def test_a_person_drives_a_work_cycle_next_to_an_agent(tmp_path: Path, nats_server: NatsServer) -> None:
    (tmp_path / "human").mkdir()
    async with agent(tmp_path, nats_server, "worker", NS) as worker:
        worker_guid = await register(worker, "python")

        # who is there
        agents = await cli_json(tmp_path, nats_server, "agents", "list")
        assert [(a["guid"], a["capabilities"]) for a in agents["agents"]] == [(worker_guid, ["python"])]

        # submit prints the id; watch follows it until the agent completes it
        code, out, error = await cli(
            tmp_path,
            nats_server,
            "work",
            "submit",
            "python",
            "lint the repo",
            "--priority",
            "8",
            "--context",
            '{"path": "src"}',
        )
        assert code == 0, error
        item_id = out.strip()
        assert len(item_id) == 36 and "queued for python at priority 8" in error
        listed = await cli_json(tmp_path, nats_server, "work", "list", "python")
        assert [i["id"] for i in listed["items"]] == [item_id] and listed["queue"]["pending"] == 1

        env = isolated_env(tmp_path / "human", NATS_URL=nats_server.url, NATS_MCP_NAMESPACE=NS)
        watcher = await asyncio.create_subprocess_exec(
            nats_mcp_exe(),
            "work",
            "watch",
            item_id,
            "--json",
            "--max-wait",
            "60s",
            env=env,
            cwd=tmp_path / "human",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            item = await claim(worker, timeout=5000)
            assert item is not None and item["id"] == item_id and item["contextData"] == {"path": "src"}
            await ok(worker, "warp_work_progress", workItemId=item_id, progress=50, note="half way")
            await ok(worker, "warp_work_complete", workItemId=item_id, result={"warnings": 0})
            out_bytes, err_bytes = await asyncio.wait_for(watcher.communicate(), 60)
        finally:
            if watcher.returncode is None:
                watcher.kill()
                await watcher.wait()
        assert watcher.returncode == 0, err_bytes.decode()
        final = json.loads(out_bytes)
        assert (final["state"], final["claimer"], final["result"]) == ("completed", worker_guid, {"warnings": 0})

        # channels: a person posts as "human", the agent reads it with the server-written sender
        code, out, error = await cli(tmp_path, nats_server, "channels", "send", "roadmap", "ship it")
        assert code == 0 and "as human" in out, error
        page = await ok(worker, "warp_channels_read", channel="roadmap")
        assert [(m["handle"], m["message"]) for m in page["messages"]] == [("human", "ship it")]
        read = await cli_json(tmp_path, nats_server, "channels", "read", "roadmap")
        assert [m["message"] for m in read["messages"]] == ["ship it"]

        # a failing item: watch exits 6, dlq list shows it, retry puts it back, discard of an unknown id exits 3
        code, out, _ = await cli(tmp_path, nats_server, "work", "submit", "python", "doomed")
        doomed = out.strip()
        item = await claim(worker, timeout=5000)
        assert item is not None and item["id"] == doomed
        await ok(worker, "warp_work_fail", workItemId=doomed, reason="cannot", recoverable=False)
        code, out, error = await cli(tmp_path, nats_server, "work", "watch", doomed, "--json")
        assert code == 6 and json.loads(out)["state"] == "dead_lettered", error
        dead = await cli_json(tmp_path, nats_server, "dlq", "list")
        assert [(d["id"], d["reason"]) for d in dead["items"]] == [(doomed, "unrecoverable")]
        assert (await cli(tmp_path, nats_server, "dlq", "retry", doomed))[0] == 0
        again = await claim(worker, timeout=5000)
        assert again is not None and again["id"] == doomed
        unknown = "0f8fad5b-d9cb-469f-a165-70867728950e"
        code, _, error = await cli(tmp_path, nats_server, "dlq", "discard", unknown)
        assert code == 3 and "not_found" in error

        # work get / cancel: the person cancels the claimed item; the agent learns it on its next call
        got = await cli_json(tmp_path, nats_server, "work", "get", doomed)
        assert (got["status"], got["claimer"]) == ("claimed", worker_guid)
        code, _, error = await cli(tmp_path, nats_server, "work", "cancel", doomed)
        assert code == 0 and "claimed: its claimer is told" in error, error
        assert await err(worker, "warp_work_complete", workItemId=doomed) == "cancelled"
        code, _, error = await cli(tmp_path, nats_server, "work", "cancel", unknown)
        assert code == 3 and "not_found" in error

        # a work boundary: queued under it, listed with it
        code, out, error = await cli(
            tmp_path, nats_server, "work", "submit", "python", "corporate task", "--boundary", "corporate"
        )
        assert code == 0 and "queued for python (boundary corporate)" in error, error
        listed = await cli_json(tmp_path, nats_server, "work", "list", "python")
        assert [(i["id"], i["boundary"]) for i in listed["items"]] == [(out.strip(), "corporate")]

    # the person's calls are audited as the local principal's agent "human", over the cli transport
    await wait_for(
        lambda: trail(tmp_path).exists() and "work_cancel" in trail(tmp_path).read_text(),
        15,
        message="the CLI's calls were not audited",
    )
    records = [json.loads(line) for line in trail(tmp_path).read_text().splitlines()]
    assert {r["transport"] for r in records} == {"cli"}
    tools = {r["tool"] for r in records if r["kind"] == "tool_call"}
    assert {
        "work_broadcast",
        "work_status",
        "channels_send",
        "dlq_retry",
        "dlq_discard",
        "work_get",
        "work_cancel",
    } <= tools


async def test_bad_input_and_an_unreachable_nats_have_their_exit_codes(tmp_path: Path, nats_server: NatsServer) -> None:
    (tmp_path / "human").mkdir()
    # bad input: exit 2, and nothing was queued
    for args in (
        ("work", "submit", "python", "x", "--deadline", "someday"),
        ("work", "submit", "python", "x", "--context", "[1, 2]"),
        ("work", "submit", "bad capability!", "x"),
        ("work", "submit", "python", "x", "--boundary", "Not A Name!"),
        ("work", "watch", "not-a-uuid"),
        ("work", "get", "0f8fad5b-d9cb-469f-a165-70867728950e", "--wait", "1h"),
    ):
        code, _, error = await cli(tmp_path, nats_server, *args)
        assert code == 2, (args, error)
        assert "nats-mcp: error:" in error and "Traceback" not in error
    status = await cli_json(tmp_path, nats_server, "work", "list", "python")
    assert (status["items"] == [] and status["queue"] is None) or status["queue"]["pending"] == 0

    # NATS away: exit 4, one line
    code, _, error = await cli(tmp_path, nats_server, "agents", "list", "--timeout", "1", NATS_URL="nats://127.0.0.1:9")
    assert code == 4 and "nats_unavailable" in error and "Traceback" not in error
