"""Boundary of the human CLI as a newcomer first meets it (issue 17): what it says when there is nothing to show or
nothing to find, on a real nats-server through real `nats-mcp` processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.cli import NS, cli, cli_json
from tests.support.natsserver import NatsServer
from tests.support.stdio import agent, ok
from tests.support.work_tools import claim, register

pytestmark = pytest.mark.slow

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


async def test_lists_read_at_80_and_200_columns(tmp_path: Path, nats_server: NatsServer) -> None:
    (tmp_path / "human").mkdir()
    reason = "pytest: 3 of 120 tests failed in tests/unit/cli/test_cli_tables.py"
    async with agent(tmp_path, nats_server, "worker", NS) as worker:
        worker_guid = await register(worker, "python", "typescript", "documentation")
        handle = (await ok(worker, "warp_handle_get"))["handle"]
        code, out, error = await cli(tmp_path, nats_server, "work", "submit", "python", "run the tests " * 10)
        assert code == 0, error
        failing = out.strip()
        assert (await claim(worker, timeout=5000) or {}).get("id") == failing
        await ok(worker, "warp_work_fail", workItemId=failing, reason=reason, recoverable=False)
        code, out, error = await cli(tmp_path, nats_server, "work", "submit", "python", "write the docs " * 10)
        queued = out.strip()

        for width in (80, 200):
            shown = {}
            for listing in (("agents", "list"), ("work", "list", "python"), ("dlq", "list")):
                code, out, error = await cli(tmp_path, nats_server, *listing, COLUMNS=str(width))
                assert code == 0, error
                assert all(len(line) <= width for line in out.splitlines()), out
                shown[listing[0]] = out
            assert any(line.startswith(f"{handle} ") for line in shown["agents"].splitlines()), shown["agents"]
            assert (worker_guid in shown["agents"]) == (width == 200)
            assert queued in shown["work"] and "write the docs write" in shown["work"]
            assert failing in shown["dlq"] and "unrecoverable" in shown["dlq"]
            # why it failed, whole and without the attempt's time and claimer: beside the row, or under it at 80
            row = next(line for line in shown["dlq"].splitlines() if line.startswith(failing))
            assert (reason in row) == (width == 200) and worker_guid not in shown["dlq"]
            assert width == 200 or f"    {reason}" in shown["dlq"].splitlines()

        listed = await cli_json(tmp_path, nats_server, "dlq", "list")  # --json: the entries as the tool gives them
        assert [(d["id"], d["reason"], d["errors"][-1].endswith(reason)) for d in listed["items"]] == [
            (failing, "unrecoverable", True)
        ]
