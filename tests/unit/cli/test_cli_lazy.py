"""The console script's start-up savings (issue 22): a root with only the command a line names (cli/app.py
``for_argv``) reads, runs and fails exactly as the whole tree; a human command finds its tool without the whole
tool table (cli/human.py ``tool_spec``); the cyclic collector pauses while a command starts, and a finished command
skips the interpreter's teardown (cli/main.py)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
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
from tests.support.env import isolated_env
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


RUN = "from nats_mcp.cli.main import run\nrun()"


def _console(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` then the console script's entry point (``run`` with ``sys.argv`` as ``code`` left it)."""
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\n{RUN}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=isolated_env(tmp_path),
        cwd=tmp_path,
        check=False,
    )


def test_a_finished_command_ends_at_once_as_it_would_have(tmp_path: Path) -> None:
    """cli/main.py ``exit_now``: exit handlers run, the whole output arrives, the status is the command's; a
    non-daemon thread still running gets the interpreter's usual wait."""
    handler = "import atexit; atexit.register(lambda: print('handler ran', file=sys.stderr))"
    helped = _console(tmp_path, f"{handler}\nsys.argv = ['nats-mcp', '--help']")
    whole = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"})
    assert helped.returncode == 0 and helped.stderr == "handler ran\n", helped.stderr
    assert helped.stdout.rstrip().splitlines()[-1] == whole.stdout.rstrip().splitlines()[-1]  # all of it arrived
    bad = _console(tmp_path, f"{handler}\nsys.argv = ['nats-mcp', 'config', 'show', '--bogus']")
    assert bad.returncode == 2 and "No such option" in bad.stderr and bad.stderr.endswith("handler ran\n")
    message = _console(tmp_path, "from nats_mcp.cli.main import exit_now; exit_now('gave up')")
    assert (message.returncode, message.stderr) == (1, "gave up\n")
    # A non-daemon thread still running when the command ends (it prints stdin once it is closed, which happens
    # after the command printed) is waited for, as without exit_now: its line arrives.
    echo = "import threading; threading.Thread(target=lambda: print(sys.stdin.read().upper())).start()"
    argv = [sys.executable, "-u", "-c", f"import sys\n{echo}\nsys.argv = ['nats-mcp', '--version']\n{RUN}"]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=isolated_env(tmp_path), cwd=tmp_path
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline().startswith("nats-mcp ")  # the command is done
        proc.stdin.write("from the thread")
        proc.stdin.close()
        assert proc.stdout.read() == "FROM THE THREAD\n"
        assert proc.wait(60) == 0
