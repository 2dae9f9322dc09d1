"""Start a coding-agent CLI (Claude Code or the GitHub Copilot CLI) as a fleet agent: headless, with `nats-mcp serve`
as its MCP server over stdio and a worker prompt built from nats-mcp's own prompts (`join-team`, then `work-loop` per
capability: src/nats_mcp/api/prompts.py).

A fleet target runs it (examples/fleet/claude.yaml, copilot.yaml)::

    command: ["python", "examples/fleet/agent_cli.py", "claude", "--name", "{agent_name}",
              "--capabilities", "{capabilities}", "--", "--max-turns", "40"]

What flows where: the coordinator fills ``{agent_name}`` and ``{capabilities}`` (comma-separated) in the command and
sets ``LOOMINAL_AGENT_ID`` (the GUID it looks for in the registry), ``NATS_URL``, ``NATS_MCP_NAMESPACE`` (and
``NATS_MCP_CONFIG`` when it has one) in the environment. This script renders the prompts with the name and the
capabilities, writes an MCP configuration (mode 0600, removed on exit) naming ``nats-mcp serve`` with those variables
(every ``NATS_*``, ``NATS_MCP_*``, ``LOOMINAL_*`` and ``MCP_PROJECT_PATH`` variable except secret-looking names: give
secrets to serve as ``*_FILE`` paths, e.g. ``NATS_MCP_NATS_PASSWORD_FILE``), and runs the CLI with it, its exit code
being this script's. SIGTERM from the fleet reaches the CLI too (the fleet signals the whole process group).

``--dry-run`` prints the command and the MCP configuration instead of running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from nats_mcp.api.prompts import BY_NAME

SERVER = "nats"
"""The MCP server's name in the CLI's configuration: Claude Code calls its tools ``mcp__nats__<tool>``."""
PASSED = re.compile(r"^(NATS_|NATS_MCP_|LOOMINAL_|MCP_PROJECT_PATH$)")
SECRET_LIKE = re.compile(r"TOKEN|SECRET|PASSWORD|PASS$|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
SECRET_OK = re.compile(r"_FILE$")
"""``*_FILE`` names a file holding the secret: a path, passed on."""


def worker_prompt(name: str, capabilities: Sequence[str], prefix: str) -> str:
    """Our `join-team` prompt, one `work-loop` per capability, and when to stop (the fleet starts agents again)."""
    parts = [BY_NAME["join-team"].render(prefix, {"handle": name, "capabilities": ",".join(capabilities)})]
    parts += [BY_NAME["work-loop"].render(prefix, {"capability": cap}) for cap in capabilities]
    parts.append(
        "You were started by the nats-mcp fleet for this work. When no queue has work left, stop: the fleet starts "
        "you again when work arrives."
    )
    return "\n\n".join(parts)


def tools(prefix: str) -> list[str]:
    """The nats-mcp tools the prompts walk the agent through, as the MCP server names them."""
    names = [*BY_NAME["join-team"].tools, *BY_NAME["work-loop"].tools]
    return [prefix + t for t in dict.fromkeys(names)]


def mcp_config(environ: Mapping[str, str], serve: str) -> dict[str, object]:
    env = {k: v for k, v in environ.items() if PASSED.match(k) and (SECRET_OK.search(k) or not SECRET_LIKE.search(k))}
    return {"mcpServers": {SERVER: {"command": serve, "args": ["serve"], "env": env}}}


def prompt_prefix(cli: str, prefix: str) -> str:
    """How the CLI names our tools in the prompt: Claude Code as ``mcp__nats__warp_...``; Copilot's own naming of MCP
    tools is not documented where we looked, so its prompt names them as the server does (``warp_...``)."""
    return f"mcp__{SERVER}__{prefix}" if cli == "claude" else prefix


def cli_argv(cli: str, prompt: str, config_file: str, prefix: str, extra: Sequence[str]) -> list[str]:
    if cli == "claude":
        # -p: print mode (headless); --allowedTools: our tools only, as Claude Code names MCP tools.
        allowed = ",".join(f"mcp__{SERVER}__{t}" for t in tools(prefix))
        return ["claude", "-p", prompt, "--mcp-config", config_file, "--allowedTools", allowed, *extra]
    # -p: non-interactive; -s: the answer only; --additional-mcp-config @FILE: our server next to the user's own;
    # --allow-tool SERVER: every tool of our MCP server and nothing else without a person to approve (add the shell and
    # write permissions the work needs after --, e.g. --allow-tool 'shell(git:*)' --allow-tool write).
    return ["copilot", "-p", prompt, "-s", "--allow-tool", SERVER, "--additional-mcp-config", f"@{config_file}", *extra]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("cli", choices=["claude", "copilot"])
    parser.add_argument("--name", default=os.environ.get("NATS_MCP_FLEET_AGENT_NAME", "fleet-agent"))
    parser.add_argument("--capabilities", default=os.environ.get("NATS_MCP_FLEET_CAPABILITIES", ""))
    parser.add_argument("--tool-prefix", default=os.environ.get("NATS_MCP_TOOL_PREFIX", "warp_"))
    parser.add_argument("--dry-run", action="store_true", help="Print the command and the MCP configuration.")
    given = list(sys.argv[1:] if argv is None else argv)
    cut = given.index("--") if "--" in given else len(given)
    args = parser.parse_args(given[:cut])
    args.extra = given[cut + 1 :]  # after --: the CLI's own options (--model, --max-turns, ...)
    caps = [c for c in args.capabilities.split(",") if c]
    if not caps:
        parser.error("no capabilities: give --capabilities (the fleet's {capabilities})")
    serve = shutil.which("nats-mcp") or str(Path(sys.executable).parent / "nats-mcp")
    config = mcp_config(os.environ, serve)
    prompt = worker_prompt(args.name, caps, prompt_prefix(args.cli, args.tool_prefix))
    if args.dry_run:
        command = cli_argv(args.cli, prompt, "<mcp config file>", args.tool_prefix, args.extra)
        print(json.dumps({"argv": command, "mcpConfig": config}, indent=2))
        return 0
    fd, path = tempfile.mkstemp(prefix="nats-mcp-", suffix=".json")  # 0600: it may name credential files
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(config, out)
        child = subprocess.Popen(cli_argv(args.cli, prompt, path, args.tool_prefix, args.extra))
        # The fleet's SIGTERM: passed on, then wait for the CLI to end (so the configuration file goes too).
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
        return child.wait()
    finally:
        Path(path).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
