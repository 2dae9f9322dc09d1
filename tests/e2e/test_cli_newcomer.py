"""Boundary of the human CLI as a newcomer first meets it (issue 17): what it says when there is nothing to show or
nothing to find, on a real nats-server through real `nats-mcp` processes."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.test_coordination_stdio import agent, ok
from tests.e2e.test_human_cli import NS, cli, cli_json
from tests.e2e.test_work_stdio import claim, register
from tests.support.natsserver import NatsServer

UNKNOWN = "0f8fad5b-d9cb-469f-a165-70867728950e"


async def test_reading_an_empty_channel_says_so(tmp_path: Path, nats_server: NatsServer) -> None:
    (tmp_path / "human").mkdir()
    code, out, error = await cli(tmp_path, nats_server, "channels", "read", "roadmap")
    assert code == 0, error
    assert out == "" and "no messages in #roadmap" in error
    page = await cli_json(tmp_path, nats_server, "channels", "read", "roadmap")
    assert page["messages"] == []


async def test_watching_an_unknown_item_says_not_found_at_once(tmp_path: Path, nats_server: NatsServer) -> None:
    (tmp_path / "human").mkdir()
    started = time.monotonic()
    code, _, error = await cli(tmp_path, nats_server, "work", "watch", UNKNOWN, "--max-wait", "10m")
    assert code == 3, error
    assert f"not_found: work item {UNKNOWN} not found" in error and "Traceback" not in error
    assert time.monotonic() - started < 30  # at once: not after the 10 minutes of --max-wait

    # a queued item is not taken for an unknown one: nobody claims it, so watching it runs into --max-wait
    code, out, error = await cli(tmp_path, nats_server, "work", "submit", "python", "never claimed")
    assert code == 0, error
    code, _, error = await cli(tmp_path, nats_server, "work", "watch", out.strip(), "--max-wait", "1s")
    assert code == 7 and "waiting for a claimer" in error, error


async def test_the_person_at_the_cli_is_not_an_agent_to_discover(tmp_path: Path, nats_server: NatsServer) -> None:
    (tmp_path / "human").mkdir()
    async with agent(tmp_path, nats_server, "worker", NS) as worker:
        worker_guid = await register(worker, "python")
        # posting and offering work (which needs a registered sender) both work from the CLI
        code, _, error = await cli(tmp_path, nats_server, "channels", "send", "roadmap", "ship it")
        assert code == 0, error
        code, out, error = await cli(tmp_path, nats_server, "work", "submit", "python", "lint the repo")
        assert code == 0, error
        item_id = out.strip()

        # ... yet no agent discovers the person, and the person's own list shows the agents only
        for offline_too in (False, True):
            found = await ok(worker, "warp_registry_discover", includeOffline=offline_too)
            assert [(a["guid"], a["agentType"]) for a in found["agents"]] == [(worker_guid, "worker")]
            listed = await cli_json(tmp_path, nats_server, "agents", "list", *(["--all"] if offline_too else []))
            assert [a["guid"] for a in listed["agents"]] == [worker_guid] and listed["total"] == 1
        code, out, error = await cli(tmp_path, nats_server, "agents", "list")
        assert code == 0 and "human" not in out and "1 agent(s)" in out, error

        # the agent still gets what the person sent
        item = await claim(worker, timeout=5000)
        assert item is not None and item["id"] == item_id
        page = await ok(worker, "warp_channels_read", channel="roadmap")
        assert [(m["handle"], m["message"]) for m in page["messages"]] == [("human", "ship it")]
