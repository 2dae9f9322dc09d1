"""The CLI's help boundary: every command's `--help` as a person reads it (the real typer app, rendered by rich)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from nats_mcp.cli.main import app
from tests.support.env import isolated_env, nats_mcp_exe


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    subcommands = getattr(command, "commands", None)
    yield path
    for name, sub in (subcommands or {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "nats-mcp")
def test_flags_show_no_value_placeholder(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output


def test_flags_read_as_flags_in_a_real_terminal_width(tmp_path: Path) -> None:
    proc = subprocess.run(
        [nats_mcp_exe(), "agents", "list", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=isolated_env(tmp_path, COLUMNS="80"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "<bool>" not in proc.stdout
    json_line = next(line for line in proc.stdout.splitlines() if "--json" in line)
    assert "Print JSON" in json_line and "<" not in json_line
    assert "<int range>" in proc.stdout  # options that take a value still say which
