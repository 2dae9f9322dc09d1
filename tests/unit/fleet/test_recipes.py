"""Boundary of the fleet recipes (docs/fleet.md, Recipes): every examples/fleet/*.yaml passes `nats-mcp fleet check`,
and examples/fleet/agent_cli.py starts a CLI with our prompts, our tools and an MCP configuration naming `serve`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from nats_mcp.api.prompts import BY_NAME
from nats_mcp.cli.main import app

ROOT = Path(__file__).resolve().parents[3]
RECIPES = sorted((ROOT / "examples" / "fleet").glob("*.yaml"))
CONTRACT = (ROOT / "docs" / "tools.md").read_text(encoding="utf-8")


def agent_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("agent_cli", ROOT / "examples" / "fleet" / "agent_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_recipe_is_a_targets_file_fleet_check_accepts() -> None:
    # `check` validates the file; it does not look for the commands (claude, copilot need not be installed here).
    assert {p.name for p in RECIPES} >= {"claude.yaml", "copilot.yaml", "python.yaml"}
    for recipe in RECIPES:
        result = CliRunner().invoke(app, ["fleet", "check", str(recipe), "--json"])
        assert result.exit_code == 0, (recipe.name, result.output)
        checked = json.loads(result.stdout)
        assert checked["valid"] is True and all(t["mechanism"] == "local" for t in checked["targets"])
    # the recipes' commands name files of this repository
    for recipe in RECIPES:
        for path in re.findall(r'"(examples/[\w/]+\.py)"', recipe.read_text(encoding="utf-8")):
            assert (ROOT / path).is_file(), (recipe.name, path)


def test_the_worker_prompt_is_ours_and_names_only_tools_of_the_contract() -> None:
    cli = agent_cli()
    prompt = cli.worker_prompt("claude-py-1", ["python", "docs"], "warp_")
    assert BY_NAME["join-team"].render("warp_", {"handle": "claude-py-1", "capabilities": "python,docs"}) in prompt
    for cap in ("python", "docs"):
        assert BY_NAME["work-loop"].render("warp_", {"capability": cap}) in prompt
    assert cli.prompt_prefix("claude", "warp_") == "mcp__nats__warp_"  # how Claude Code names an MCP tool
    for tool in cli.tools("warp_"):
        assert f"#### `{tool}`" in CONTRACT, tool


def test_the_mcp_configuration_passes_the_agents_environment_but_no_secret() -> None:
    environ = {
        "NATS_URL": "nats://n:4222",
        "NATS_MCP_NAMESPACE": "team",
        "LOOMINAL_AGENT_ID": "a" * 32,
        "NATS_MCP_FLEET_CAPABILITIES": "python",
        "NATS_MCP_NATS_PASSWORD": "hunter2",
        "NATS_MCP_NATS_PASSWORD_FILE": "/run/secrets/nats",
        "ANTHROPIC_API_KEY": "sk-x",
        "HOME": "/home/x",
    }
    server = agent_cli().mcp_config(environ, "/bin/nats-mcp")["mcpServers"]["nats"]
    assert server["command"] == "/bin/nats-mcp" and server["args"] == ["serve"]
    assert server["env"] == {
        "NATS_URL": "nats://n:4222",
        "NATS_MCP_NAMESPACE": "team",
        "LOOMINAL_AGENT_ID": "a" * 32,
        "NATS_MCP_FLEET_CAPABILITIES": "python",
        "NATS_MCP_NATS_PASSWORD_FILE": "/run/secrets/nats",
    }


@pytest.mark.parametrize("which", ["claude", "copilot"])
def test_the_cli_runs_with_the_configuration_which_is_removed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    # A stand-in for the CLI on PATH: records its arguments and the MCP configuration file it was given.
    record = tmp_path / "record.json"
    fake = tmp_path / "bin" / which
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "argv = sys.argv[1:]\n"
        "flag = '--mcp-config' if '--mcp-config' in argv else '--additional-mcp-config'\n"
        "path = argv[argv.index(flag) + 1].lstrip('@')\n"
        f"json.dump({{'argv': argv, 'path': path, 'config': json.load(open(path))}}, open({str(record)!r}, 'w'))\n"
        "sys.exit(3)\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LOOMINAL_AGENT_ID", "b" * 32)
    code = agent_cli().main([which, "--name", "w-1", "--capabilities", "python", "--", "--model", "m"])
    assert code == 3  # the CLI's exit code
    seen = json.loads(record.read_text())
    assert seen["config"]["mcpServers"]["nats"]["env"]["LOOMINAL_AGENT_ID"] == "b" * 32
    assert not Path(seen["path"]).exists()  # removed once the CLI ended
    assert seen["argv"][:2] == ["-p", seen["argv"][1]] and "warp_work_claim" in seen["argv"][1]
    assert seen["argv"][-2:] == ["--model", "m"]
    if which == "claude":
        allowed = seen["argv"][seen["argv"].index("--allowedTools") + 1].split(",")
        assert "mcp__nats__warp_work_claim" in allowed and all(t.startswith("mcp__nats__warp_") for t in allowed)
    else:
        assert "-s" in seen["argv"] and "--allow-all-tools" not in seen["argv"]
        assert seen["argv"][seen["argv"].index("--allow-tool") + 1] == "nats"  # our server's tools only
