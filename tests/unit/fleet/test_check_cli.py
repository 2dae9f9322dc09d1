"""Boundary of `nats-mcp fleet check`: a usable file gets a summary and exit 0, a bad one its problem and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from nats_mcp.cli.main import app

GOOD = """
version: 1
targets:
  - {name: py, capabilities: [python], max: 2, mechanism: local, local: {command: [python, w.py]}}
"""


def test_check_accepts_and_refuses(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("mechanism: local", "mechanism: nomad"))
    runner = CliRunner()
    ok = runner.invoke(app, ["fleet", "check", str(good), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["targets"] == [
        {"name": "py", "capabilities": ["python"], "min": 0, "max": 2, "mechanism": "local"}
    ]
    refused = runner.invoke(app, ["fleet", "check", str(bad)])
    assert refused.exit_code == 2
    assert "unknown mechanism 'nomad'; available: local, ssh, webhook, kubernetes" in refused.stderr
    missing = runner.invoke(app, ["fleet", "check", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2 and "cannot read" in missing.stderr


def test_run_refuses_a_missing_secret_before_connecting(tmp_path: Path) -> None:
    targets = tmp_path / "t.yaml"
    targets.write_text(
        GOOD.replace("command: [python, w.py]}", "command: [python, w.py], env: {API_TOKEN: {fromEnv: NOPE_X}}}")
    )
    result = CliRunner().invoke(app, ["fleet", "run", str(targets)])
    assert result.exit_code == 2
    assert "target py: env API_TOKEN (fromEnv NOPE_X) is not set in this environment" in result.stderr
