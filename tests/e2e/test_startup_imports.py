"""Start-up boundary of the `nats-mcp` process: what the stdio server and the plain commands import (issue 22).

Speed is measured in bench/startup.py; here the behaviour behind it: ``python -X importtime`` names every module a
process imports, and the stdio server and the commands that need no transport must not import the transports,
authentication libraries or the SDK parts they do not use (each costs tens to hundreds of ms of start-up).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mcp import Client, StdioServerParameters, stdio_client

from tests.support.env import isolated_env
from tests.support.natsserver import NatsServer, wait_for_sync
from tests.support.stdio import TOOLS

IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.MULTILINE)

NEVER_ON_STDIO = (
    "aiohttp",  # nats-py's websocket transport (deferred: cli/deferred.py)
    "mcp.client",  # the SDK's client and high-level server (deferred with the SDK's package __init__)
    "mcp.server.mcpserver",
    "httpx2",
    "grpc",
    "opentelemetry.sdk",
    "jwt",
    "cryptography",
    "nats_mcp.transports.http",
    "nats_mcp.transports.grpc",
    "nats_mcp.dashboard",
    "nats_mcp.security.authn.chain",  # the gateways' authenticators (httpx, PyJWT, cryptography)
    "nats_mcp.security.authn.jwt",
    "nats_mcp.security.authn.introspection",
)
NEVER_IN_PLAIN_COMMANDS = (
    *NEVER_ON_STDIO,
    "nats",
    "mcp",
    "mcp_types",
    "prometheus_client",
    "opentelemetry",
    "starlette",
    "uvicorn",
    "nats_mcp.bus.connection",
    "nats_mcp.api",
)
OTHER_COMMANDS = tuple(f"nats_mcp.cli.{m}" for m in ("serve_cmd", "agents_cmd", "fleet_cmd", "dashboard_cmd", "human"))
"""Command modules `config show` and `policy check` do not use: a command line builds its own command alone."""
NEVER_IN_HUMAN_COMMANDS = (
    *NEVER_ON_STDIO,
    "mcp",
    "mcp_types",
    "prometheus_client",
    "starlette",
    "uvicorn",
    "yaml",  # no config or policy file here
    "nats_mcp.api.server",
    "nats_mcp.api.tools.coordination",  # the whole tool table: the command's tool comes from its family alone
    "nats_mcp.api.tools.work",
    "nats_mcp.api.tools.natsops",
    "nats_mcp.coord.natsops",
    "nats_mcp.observe",
    "nats_mcp.transports",
    "nats_mcp.cli.serve_cmd",
    "nats_mcp.cli.work_cmd",
)
"""What `agents list` (a human command: settings, NATS, the guard, one tool) needs none of."""
NEVER_FOR_VERSION = (*NEVER_IN_PLAIN_COMMANDS, "pydantic_settings", "nats_mcp.config.settings", "yaml")
NEVER_FOR_HELP = (*NEVER_FOR_VERSION, "importlib.metadata")  # the installed version is looked up on first use only
NEVER_BEFORE_FIRST_ANSWER = (
    *NEVER_FOR_HELP,
    "pydantic",
    "pydantic_core",
    "typer",
    "click",
    "rich",
    "anyio",
    "asyncio",
    "nats_mcp.config",
    "nats_mcp.security",
    "nats_mcp.cli.app",
    "nats_mcp.cli.common",
    "nats_mcp.cli.serve_cmd",
)
"""What the stdio front's answers need none of: the fast path's modules up to the thread that answers from the
start-up cache (cli/main.py ``run`` to transports/stdio_front.py) import only the standard library."""
FRONT_PATH = (
    "import nats_mcp.cli.main, nats_mcp.cli.deferred, nats_mcp.cli.fastpath, nats_mcp.transports.startup_cache, "
    "nats_mcp.transports.stdio_front"
)


def imported(stderr: str) -> set[str]:
    return set(IMPORTED.findall(stderr))


def offenders(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


async def test_stdio_serve_imports_no_transport_or_auth_library(tmp_path: Path, nats_server: NatsServer) -> None:
    """A whole stdio session (initialize, tools/list, calls that reach NATS) under -X importtime."""
    log = tmp_path / "serve.log"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-X", "importtime", "-m", "nats_mcp.cli.main", "serve"],
        env=isolated_env(tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE="startup"),
        cwd=str(tmp_path),
    )
    with log.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            assert len((await client.list_tools()).tools) == len(TOOLS)
            wait_for_sync(lambda: "NATS connected" in log.read_text(), 20, message=log.read_text)
            assert not (await client.call_tool("warp_handle_set", {"handle": "startup"})).is_error
            sent = await client.call_tool("warp_channels_send", {"channel": "roadmap", "message": "hello"})
            assert not sent.is_error, sent.content
    modules = imported(log.read_text())
    # The profile is read right: the stdio server's own modules are in it.
    assert {"nats_mcp.api.server", "mcp.server.lowlevel.server", "nats.aio.client"} <= modules
    assert offenders(modules, NEVER_ON_STDIO) == []


def test_plain_commands_import_neither_nats_nor_the_sdk(tmp_path: Path) -> None:
    """--help and --version load no settings; `config show` and `policy check` no NATS client, SDK or transport."""
    env = isolated_env(tmp_path)
    policy = Path(__file__).resolve().parents[2] / "docs" / "examples" / "nats-ops-policy.yaml"
    for argv, forbidden in (
        (["--help"], NEVER_FOR_HELP),
        (["--version"], NEVER_FOR_VERSION),
        (["config", "show"], (*NEVER_IN_PLAIN_COMMANDS, *OTHER_COMMANDS, "yaml")),  # no config file: no YAML parser
        (["policy", "check", str(policy)], (*NEVER_IN_PLAIN_COMMANDS, *OTHER_COMMANDS)),
    ):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "nats_mcp.cli.main", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
            check=False,
        )
        assert proc.returncode == 0, (argv, proc.stderr[-2000:])
        modules = imported(proc.stderr)
        assert "nats_mcp.cli.main" in modules or "typer" in modules, argv  # read right: the command's own imports
        assert offenders(modules, forbidden) == [], argv


def test_a_human_command_imports_its_tool_alone(tmp_path: Path, nats_server: NatsServer) -> None:
    """`agents list` against a running nats-server: settings, NATS, the guard and one tool's family, nothing more."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nats_mcp.cli.main", "agents", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=isolated_env(tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE="startup"),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"agents": []' in proc.stdout  # it did reach NATS
    modules = imported(proc.stderr)
    # Read right: the command's own modules are in the profile.
    assert {"nats_mcp.cli.agents_cmd", "nats_mcp.api.tools.registry", "nats.aio.client", "nats_mcp.runtime"} <= modules
    assert offenders(modules, NEVER_IN_HUMAN_COMMANDS) == []


def test_the_front_answers_on_the_standard_library_alone(tmp_path: Path) -> None:
    """The floor of the first answer: what serve_fast runs before the front's thread starts, and the thread."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", FRONT_PATH],
        capture_output=True,
        text=True,
        timeout=60,
        env=isolated_env(tmp_path),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = imported(proc.stderr)
    assert {"nats_mcp.cli.fastpath", "nats_mcp.transports.stdio_front", "hashlib"} <= modules  # read right
    assert offenders(modules, NEVER_BEFORE_FIRST_ANSWER) == []
