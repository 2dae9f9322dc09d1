"""Boundary between the tool definitions and docs/tools.md: the committed page is what the generator renders now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nats_mcp.api import contract
from nats_mcp.api.prompts import PROMPTS
from nats_mcp.api.server import ToolTable

DOC = Path(__file__).resolve().parents[3] / "docs" / "tools.md"


def test_committed_page_matches_the_definitions() -> None:
    assert DOC.read_text(encoding="utf-8") == contract.render(), (
        f"{DOC} differs from the tool definitions: run {contract.COMMAND}"
    )


def test_the_command_writes_the_page() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nats_mcp.api.contract"], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout == contract.render()


def test_every_error_code_is_explained_and_every_tool_has_a_section() -> None:
    assert set(contract.ERROR_CODES) == contract.error_codes()
    page = contract.render()
    for tool in ToolTable(contract.PREFIX, ops=True).tools:
        assert f"`{tool.name}` — {tool.title}" in page, tool.name


def test_every_prompt_and_argument_is_documented() -> None:
    page = contract.render()
    for spec in PROMPTS:
        section = page.split(f"### `{spec.name}` — {spec.title}", 1)[1].split("\n### ", 1)[0]
        assert all(f"`{contract.PREFIX}{tool}`" in section for tool in spec.tools), spec.name
        assert all(f"| `{arg.name}` | {'yes' if arg.required else 'no'} |" in section for arg in spec.args), spec.name
