"""Boundary of a fleet agent's start-up: `nats-mcp serve` run with the environment `fleet run` gives an agent warns
about none of the fleet's own variables, and still warns about a misspelt one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from nats_mcp.fleet.engine import EnvFor
from nats_mcp.fleet.state import InstanceRecord
from nats_mcp.fleet.targets import parse_targets
from tests.support.env import isolated_env, nats_mcp_exe

TARGETS = """
version: 1
targets:
  - {name: py, capabilities: [python, docs], max: 2, mechanism: local, local: {command: [python, w.py]}}
"""


def test_serve_knows_the_fleet_variables_and_still_warns_about_a_typo(tmp_path: Path) -> None:
    (target,) = parse_targets(TARGETS).targets
    given = EnvFor({"NATS_MCP_NAMESPACE": "fleet-env"}, {})(target, InstanceRecord("py", "a1", "a" * 32, "py-a1", 0.0))
    fleet_vars = sorted(v for v in given if v.startswith("NATS_MCP_FLEET_"))
    assert len(fleet_vars) == 5, given  # what the coordinator gives each agent (docs/fleet.md)
    env = isolated_env(
        tmp_path,
        **given,
        NATS_URL="nats://127.0.0.1:1",  # nothing needs to listen
        NATS_MCP_FLEET_TARGT="py",
    )
    # stdin closed: serve starts (loading its settings, warnings first), finds no client, and ends.
    done = subprocess.run(
        [nats_mcp_exe(), "serve"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "unknown environment variable" in line]
    assert warned == ["warning: ignoring unknown environment variable NATS_MCP_FLEET_TARGT"], done.stderr
