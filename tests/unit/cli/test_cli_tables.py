"""The CLI's table boundary: `agents list`, `work list` and `dlq list` rendered by rich at fixed terminal widths."""

from __future__ import annotations

import io
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from nats_mcp.cli.agents_cmd import agents_table
from nats_mcp.cli.dlq_cmd import dead_table, why
from nats_mcp.cli.tables import when
from nats_mcp.cli.work_cmd import items_table
from tests.support.env import isolated_env, nats_mcp_exe

GUID = "7469cabe05f2a3c4d5e6f708192a3b4c"
ITEM = "0f8fad5b-d9cb-469f-a165-70867728950e"
WHY = "ruff found 42 problems in src/nats_mcp/cli/tables.py: E501 line too long"
NOW = datetime.now(UTC)


def iso(delta: timedelta) -> str:
    return (NOW + delta).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rendered(renderable: RenderableType, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None, legacy_windows=False)
    console.print(renderable, soft_wrap=False)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    lines = [line.rstrip() for line in text.splitlines()]
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    return lines


def agent(handle: str, capabilities: list[str]) -> dict[str, Any]:
    return {
        "guid": GUID,
        "handle": handle,
        "agentType": "code-reviewer",
        "capabilities": capabilities,
        "status": "online",
        "currentTaskCount": 2,
        "lastHeartbeat": iso(timedelta(seconds=-12)),
        "hostname": "build-host-7",
    }


def dead(error: str) -> dict[str, Any]:
    item = {"capability": "python", "taskId": "cli-20261207T055649"}
    return {
        "id": ITEM,
        "reason": "unrecoverable",
        "errors": ["earlier", error],
        "attempts": 3,
        "failedAt": iso(timedelta(minutes=-5)),
        "workItem": item,
    }


def queued(description: str) -> dict[str, Any]:
    return {
        "id": ITEM,
        "taskId": "task-7",
        "priority": 8,
        "attempts": 0,
        "description": description,
        "deadline": iso(timedelta(hours=2, seconds=5)),
        "offeredAt": iso(timedelta(minutes=-3)),
    }


@pytest.mark.parametrize("width", [80, 200])
def test_agents_read_at_80_and_200_columns(width: int) -> None:
    page = {
        "agents": [agent("reviewer-of-pull-requests", ["python", "typescript", "testing", "documentation"])],
        "total": 1,
    }
    lines = rendered(agents_table(page, width, NOW), width)
    header, row = lines[1], lines[3]
    assert row.startswith("reviewer-of-pull-requests") and "online" in row and "12s ago" in row
    assert "capabilities" in header and "python, typescript" in row
    if width == 200:
        assert GUID in row and "build-host-7" in row and "python, typescript, testing, documentation" in row
        assert not any("not shown" in line for line in lines)
    else:
        assert lines[-1].startswith("not shown at this width: ") and "guid" in lines[-1]


@pytest.mark.parametrize("width", [80, 200])
def test_work_items_read_at_80_and_200_columns(width: int) -> None:
    description = "lint the repository\nand fix every warning you find in src and tests, then open a pull request"
    queue = {"pending": 1, "inFlight": 0, "deadLettered": 0}
    lines = rendered(items_table("python", queue, [queued(description)], width, NOW), width)
    assert lines[0] == "python: 1 pending, 0 in flight, 0 dead-lettered"
    row = lines[3]
    assert row.startswith(ITEM) and "lint the repository and f" in row and "3m ago" in row
    if width == 200:
        assert " ".join(description.split()) in row and "in 2h" in row and "task-7" in row
        assert row.rstrip().endswith("-")  # unbounded
        bounded = rendered(
            items_table("python", queue, [{**queued(description), "boundary": "corporate"}], width, NOW), width
        )
        assert bounded[3].rstrip().endswith("corporate")
    else:
        assert row.endswith("3m ago") and "…" in row  # the description gives way, in one line


@pytest.mark.parametrize("width", [80, 200])
def test_dead_letters_show_why_they_failed(width: int) -> None:
    entry = dead(f"2026-12-07T05:56:49.713Z attempt 3 by {GUID}: {WHY}")
    lines = rendered(dead_table([entry], width, NOW), width)
    assert GUID not in "".join(lines)  # the claimer of the attempt is not the reason
    if width == 200:  # beside the row
        assert lines[3].startswith(f"{ITEM}  unrecoverable  {WHY}  python")
    else:  # too long to fit beside it: whole, on its own line under the row
        assert lines[3].startswith(f"{ITEM}  unrecoverable  python")
        assert lines[4] == f"    {WHY}"


def test_narrower_than_the_essentials_turns_rows_into_records() -> None:
    lines = rendered(dead_table([dead(f"2026-12-07T05:56:49.713Z attempt 1: lease expired (held by {GUID})")], 50), 50)
    assert f"id:         {ITEM}" in lines
    assert "reason:     unrecoverable" in lines
    assert any(line.startswith("last error: lease expired (held by") for line in lines)


def test_why_is_the_reason_part_of_an_error_entry() -> None:
    assert why(f"2026-12-07T05:56:49.713Z attempt 2 by {GUID}: cannot: really") == "cannot: really"
    assert why("2026-12-07T05:56:49.713Z attempt 4: lease expired (held by None)") == "lease expired (held by None)"
    assert why("... 3 more ...") == "... 3 more ..."


def test_when_reads_as_an_age_or_a_countdown() -> None:
    assert when(iso(timedelta(seconds=-12)), NOW) == "12s ago"
    assert when(iso(timedelta(minutes=-5, seconds=-59)), NOW) == "5m ago"
    assert when(iso(timedelta(days=3, minutes=1)), NOW) == "in 3d"
    assert when(None) == "-" and when("not a time") == "not a time"


@pytest.mark.parametrize("width", [80, 200])
def test_config_show_reads_at_80_and_200_columns(tmp_path: Path, width: int) -> None:
    env = isolated_env(tmp_path, COLUMNS=str(width), NATS_MCP_NAMESPACE="team-wide-enough-to-matter")
    proc = subprocess.run([nats_mcp_exe(), "config", "show"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [line.rstrip() for line in proc.stdout.splitlines()]
    assert all(len(line) <= width for line in lines), proc.stdout
    row = next(line for line in lines if line.startswith("namespace "))
    assert "team-wide-enough-to-matter" in row
    assert ("NATS_MCP_NAMESPACE" in row) == (width == 200)
