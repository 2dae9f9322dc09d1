"""The stdio fast path's boundary: a `serve` line it reads by hand fails with the message and exit code the Typer
command line gives for the same line (both run here in-process, each on its own; none of these lines serves)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nats_mcp.cli.fastpath import serve_fast, stdio_plan
from nats_mcp.cli.main import app

BAD_LINES = [
    ["--set", "no-equals-sign", "serve"],
    ["--log-level", "LOUD", "serve"],
    ["--config", "missing.yaml", "serve"],
    ["serve", "--metrics-port", "70000"],
    ["--set", "security.policy_file=missing-policy.yaml", "serve", "--transport", "stdio"],
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("NATS_MCP_", "NATS_", "MCP_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("argv", BAD_LINES, ids=" ".join)
def test_a_bad_serve_line_fails_as_through_typer(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    typer_run = CliRunner().invoke(app, argv)
    plan = stdio_plan(argv)
    assert plan is not None, argv  # read by hand
    with pytest.raises(SystemExit) as exited:
        serve_fast(plan, argv)
    fast_err = capsys.readouterr().err
    assert typer_run.exit_code == 2 and exited.value.code == 2, (typer_run.output, fast_err)
    assert "nats-mcp: error:" in fast_err and fast_err == typer_run.stderr, (fast_err, typer_run.stderr)
