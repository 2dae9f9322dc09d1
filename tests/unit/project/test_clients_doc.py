"""Boundary between docs/clients.md's "Tested clients" table and the suite: the tests and versions it names exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.support.ts_client import TS_SDK_VERSION

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "clients.md"
MCP1 = ROOT / "tests" / "clients" / "mcp1" / "pyproject.toml"


def section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Tested clients\n")
    return text[start : text.index("\n## ", start + 1)]


def test_every_test_file_the_table_names_exists() -> None:
    rows = [line for line in section().splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) >= 7, rows
    for row in rows:
        test_cell = row.rstrip(" |").rsplit("|", 1)[1]
        files = re.findall(r"`((?:tests/e2e/)?test_\w+\.py)", test_cell)
        assert files, row
        for name in files:
            path = ROOT / name if name.startswith("tests/") else ROOT / "tests" / "e2e" / name
            assert path.is_file(), f"docs/clients.md names {name}, which does not exist"


def test_the_client_versions_are_those_the_tests_pin() -> None:
    text = section()
    pinned = tomllib.loads(MCP1.read_text(encoding="utf-8"))["project"]["dependencies"]
    assert len(pinned) == 1 and pinned[0].startswith("mcp==")
    mcp1 = pinned[0].removeprefix("mcp==")
    assert f"TypeScript SDK `Client` {TS_SDK_VERSION}" in text
    assert f"Python `mcp` {mcp1} `ClientSession`" in text
