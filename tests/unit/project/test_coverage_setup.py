"""Boundary of the coverage set-up: children the tests start get the coverage variables and nothing else of ours,
and the floor scripts/coverage reads is the one pyproject.toml declares."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from coverage import CoverageData

from tests.support.env import COVERAGE_VARS, isolated_env, nats_mcp_exe

ROOT = Path(__file__).resolve().parents[3]


def test_children_get_the_coverage_variables_when_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVERAGE_PROCESS_START", "/somewhere/pyproject.toml")
    monkeypatch.setenv("COVERAGE_FILE", "/somewhere/.cache/coverage/data")
    monkeypatch.setenv("SOMETHING_OF_THE_DEVELOPER", "leaks")
    env = isolated_env(tmp_path, NATS_URL="nats://127.0.0.1:1")
    assert env["COVERAGE_PROCESS_START"] == "/somewhere/pyproject.toml"
    assert env["COVERAGE_FILE"] == "/somewhere/.cache/coverage/data"
    assert "SOMETHING_OF_THE_DEVELOPER" not in env  # still isolated otherwise
    assert env["NATS_URL"] == "nats://127.0.0.1:1"


def test_children_get_no_coverage_variable_when_unmeasured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in COVERAGE_VARS:
        monkeypatch.delenv(name, raising=False)
    assert not {name for name in isolated_env(tmp_path) if name.startswith("COVERAGE")}


def test_the_floor_scripts_coverage_reads_is_the_declared_one() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    declared = tomllib.loads(text)["tool"]["coverage"]["report"]["fail_under"]
    script = (ROOT / "scripts" / "coverage").read_text()
    pattern = re.search(r"sed -n '(s/[^']*)'", script)
    assert pattern, "scripts/coverage no longer reads the floor with sed"
    # the script's expression, applied as sed would: s/^fail_under = \([0-9.]*\).*/\1/p
    expr = pattern.group(1).split("/")[1].replace(r"\(", "(").replace(r"\)", ")")
    found = [m.group(1) for line in text.splitlines() if (m := re.match(expr, line))]
    assert found == [str(declared)], (found, declared)
    assert 0 < declared <= 100
    # the data of every process goes to one place, combined afterwards
    run = tomllib.loads(text)["tool"]["coverage"]["run"]
    assert run["parallel"] is True and "_exit" in run["patch"] and run["source_pkgs"] == ["nats_mcp"]


def test_a_nats_mcp_child_is_measured_when_given_the_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole mechanism on one child: coverage's .pth starts measuring it, and its exit saves the data."""
    data = tmp_path / "cov" / "data"
    data.parent.mkdir()
    monkeypatch.setenv("COVERAGE_PROCESS_START", str(ROOT / "pyproject.toml"))
    monkeypatch.setenv("COVERAGE_FILE", str(data))
    done = subprocess.run(
        [nats_mcp_exe(), "--help"], env=isolated_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    files = list(data.parent.glob("data.*"))
    assert len(files) == 1, files  # one process, one data file (parallel = true)
    measured = CoverageData(basename=str(files[0]))
    measured.read()
    main = [f for f in measured.measured_files() if f.endswith("nats_mcp/cli/main.py")]
    assert main and measured.lines(main[0]), sorted(measured.measured_files())[:5]
