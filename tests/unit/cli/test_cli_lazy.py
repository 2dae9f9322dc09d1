"""The console script's start-up savings (issue 22): a root with only the command a line names (cli/app.py
``for_argv``) reads, runs and fails exactly as the whole tree; a human command finds its tool without the whole
tool table (cli/human.py ``tool_spec``); the cyclic collector pauses while a command starts (cli/main.py)."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nats_mcp.api.tools.coordination import TOOLS
from nats_mcp.api.tools.natsops import OPS_TOOLS
from nats_mcp.cli import main
from nats_mcp.cli.app import COMMANDS, build, for_argv
from nats_mcp.cli.human import tool_spec
from nats_mcp.cli.main import app
from tests.support.natsserver import wait_for_sync

LINES = [
    *([name, "--help"] for name in COMMANDS),
    ["--namespace", "x", "work", "list", "--help"],
    ["--nats-url=nats://127.0.0.1:1", "dlq", "list", "--limit", "0"],
    ["--log-level", "DEBUG", "config", "show", "--bogus"],
    ["--set", "nats.connect_timeout_s=3", "config", "show", "--json"],
    ["config", "show"],
    ["--namespace", "agents", "config", "show", "--json"],  # a value that names a command is still a value
    ["agents", "lst"],
    ["work"],
    ["channels", "read"],
    ["--bogus", "agents", "list"],
    ["agnets", "list"],
    ["--namespace"],
    ["--help"],
    ["--version"],
    [],
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("NATS_MCP_", "NATS_", "MCP_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.chdir(tmp_path)


def names(root: typer.Typer) -> set[str | None]:
    return {g.name for g in root.registered_groups} | {c.name for c in root.registered_commands}


@pytest.mark.parametrize("argv", LINES, ids=lambda argv: " ".join(argv) or "(none)")
def test_a_line_reads_as_through_the_whole_tree(argv: list[str]) -> None:
    whole = CliRunner().invoke(app, argv)
    alone = CliRunner().invoke(for_argv(argv), argv)
    assert (alone.exit_code, alone.stdout, alone.stderr) == (whole.exit_code, whole.stdout, whole.stderr)
    assert whole.stdout or whole.stderr  # read right: each line prints something (help, a table, an error)


def test_only_the_named_command_is_built() -> None:
    assert names(build()) == set(COMMANDS) == names(app)  # the table is the whole tree
    assert names(for_argv(["--namespace", "x", "--config=c.yaml", "agents", "list"])) == {"agents"}
    assert names(for_argv(["nats-permissions", "--role", "agent"])) == {"nats-permissions"}
    assert names(for_argv(["--set", "--help", "serve"])) == {"serve"}  # Click takes "--help" as --set's value
    # Anything else gets the whole tree: root help, no command, an unknown option or command, a missing value.
    for argv in ([], ["--help"], ["--version"], ["--bogus", "agents"], ["agnets"], ["--namespace"], ["-", "agents"]):
        assert names(for_argv(argv)) == set(COMMANDS), argv


def test_a_tool_comes_from_its_family_alone() -> None:
    for spec in TOOLS:
        assert tool_spec(spec.suffix) is spec
    for suffix in ("no_such_tool", "work_no_such", OPS_TOOLS[0].suffix, ""):
        with pytest.raises(KeyError):
            tool_spec(suffix)


def test_the_collector_pauses_while_a_command_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main, "GC_PAUSE_S", 0.05)
    assert gc.isenabled()
    try:
        main.pause_gc()
        assert not gc.isenabled()
        wait_for_sync(gc.isenabled, 10, message="the collector did not resume")
        assert gc.get_freeze_count() > 0  # what existed by then is skipped by later passes
    finally:
        gc.unfreeze()
        gc.enable()
