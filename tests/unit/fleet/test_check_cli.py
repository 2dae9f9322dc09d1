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
    bad.write_text(GOOD.replace("mechanism: local", "mechanism: kubernetes"))
    runner = CliRunner()
    ok = runner.invoke(app, ["fleet", "check", str(good), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["targets"] == [
        {"name": "py", "capabilities": ["python"], "min": 0, "max": 2, "mechanism": "local"}
    ]
    refused = runner.invoke(app, ["fleet", "check", str(bad)])
    assert refused.exit_code == 2
    assert "mechanism 'kubernetes' is not available yet; available: local" in refused.stderr
    missing = runner.invoke(app, ["fleet", "check", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
