"""The HTTP transport: `nats-mcp serve --transport http` launchers, API keys and MCP/HTTP clients of it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from nats_mcp.security.authn.apikeys import ApiKeys
from tests.support.env import connected, isolated_env, nats_mcp_exe, stop_serve
from tests.support.natsserver import _pdeathsig_preexec, wait_for
from tests.support.stdio import ok

AGENT_HEADER = "x-nats-mcp-agent"


POLICY = """
version: 1
roles:
  agent:
    tools: ["*"]
    namespaces: ["*"]
    channels: {read: ["*"], send: ["*"]}
    capabilities: {broadcast: ["*"], claim: ["*"]}
    reservations: ["**"]
    admin: [dlq, reservations]
  reader:
    tools: ["handle_*", "registry_*", "channels_*"]
    namespaces: ["*"]
    channels: {read: ["*"], send: []}
    agents: ["default"]
groups: {agent: [agent]}
scopes: {"mcp:agent": [agent]}
"""


KEY_RE = re.compile(r"nmk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


INIT: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}


MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@dataclass
class HttpServer:
    """One `nats-mcp serve --transport http --port 0` child and where it listens."""

    name: str
    proc: asyncio.subprocess.Process
    port: int
    scheme: str
    logs: tuple[Path, Path]

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def stdout(self) -> str:
        return self.logs[0].read_text(errors="replace")

    def stderr(self) -> str:
        return self.logs[1].read_text(errors="replace")

    async def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 30) -> int:
        """Signal the process and wait for it; SIGINT (Ctrl-C) is the clean stop."""
        return await stop_serve(self.proc, f"serve {self.name}", self.stderr, sig, timeout)


def _log_files(tmp_path: Path, name: str) -> tuple[Path, Path]:
    return tmp_path / f"{name}.out", tmp_path / f"{name}.err"


def server_env(tmp_path: Path, nats_url: str, port_file: Path, **env: str) -> dict[str, str]:
    return isolated_env(tmp_path, NATS_URL=nats_url, NATS_MCP_HTTP_PORT_FILE=str(port_file), **env)


async def run_cli(tmp_path: Path, *args: str, timeout: float = 60, **env: str) -> tuple[int, str, str]:
    """A short-lived `nats-mcp` command: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        nats_mcp_exe(),
        *args,
        env=isolated_env(tmp_path, **env),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, error = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), error.decode()


async def launch(tmp_path: Path, name: str, nats_url: str, *args: str, **env: str) -> HttpServer:
    """Start a serve process on an OS-assigned port; return once it accepts connections."""
    port_file = tmp_path / f"{name}.port"
    port_file.unlink(missing_ok=True)
    logs = _log_files(tmp_path, name)
    with logs[0].open("wb") as out, logs[1].open("wb") as error:
        proc = await asyncio.create_subprocess_exec(
            nats_mcp_exe(),
            "serve",
            "--transport",
            "http",
            "--port",
            "0",
            *args,
            env=server_env(tmp_path, nats_url, port_file, **env),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=error,
            preexec_fn=_pdeathsig_preexec(),
        )
    scheme = "https" if "--tls-cert" in args else "http"
    server = HttpServer(name, proc, 0, scheme, logs)

    def bound_port() -> int | None:
        if proc.returncode is not None:
            raise AssertionError(f"serve {name} exited with {proc.returncode}:\n{server.stderr()[-3000:]}")
        text = port_file.read_text() if port_file.exists() else ""
        return int(text) if text.endswith("\n") else None

    try:
        server.port = await wait_for(bound_port, 60, interval=0.05, message=f"serve {name} wrote no port file")

        # The port file is written before uvicorn calls listen() (reported): wait until connections are accepted.
        async def accepting() -> bool:
            bound_port()
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.close()
            return True

        await wait_for(accepting, 30, interval=0.05, message=f"serve {name} never listened", ignore=(OSError,))
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return server


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, name: str, nats_url: str, *args: str, **env: str) -> AsyncIterator[HttpServer]:
    """A serve process for the block; stopped (Ctrl-C, then SIGKILL if need be) on the way out."""
    server = await launch(tmp_path, name, nats_url, *args, **env)
    try:
        yield server
    finally:
        if server.proc.returncode is None:
            await server.stop()


def http_client(
    token: str | None = None, agent: str | None = None, verify: ssl.SSLContext | bool = True, **kw: Any
) -> httpx2.AsyncClient:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if agent is not None:
        headers[AGENT_HEADER] = agent
    return httpx2.AsyncClient(
        headers=headers, timeout=httpx2.Timeout(30, read=300), verify=verify, trust_env=False, **kw
    )


@contextlib.asynccontextmanager
async def mcp_client(
    url: str, token: str | None = None, *, agent: str | None = None, mode: str = "auto", verify: Any = True
) -> AsyncIterator[Client]:
    """The SDK client over streamable HTTP with a bearer token (and optionally the agent header)."""
    hc = http_client(token, agent, verify)
    async with hc, Client(streamable_http_client(url, http_client=hc), mode=mode) as client:  # type: ignore[arg-type]
        assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
        yield client


async def api_key(tmp_path: Path, nats_url: str, name: str, *roles: str) -> tuple[str, str]:
    """A real API key (as `nats-mcp keys create` makes it) in the deployment's NATS: (key, id)."""
    async with connected(tmp_path, nats_url) as conn:
        key, record = await ApiKeys(conn).create(name, list(roles or ("agent",)))
    return key, record.id


async def dev_jwt(tmp_path: Path, subject: str, *roles: str, audience: str | None = None) -> str:
    """A dev JWT from `nats-mcp token issue` (signed with the dev key the servers of this test share)."""
    args = ["token", "issue", "--subject", subject, *(a for r in roles for a in ("--role", r))]
    if audience is not None:
        args += ["--audience", audience]
    code, out, error = await run_cli(tmp_path, *args)
    assert code == 0, error
    return out.strip()


async def guid(client: Client) -> str:
    found: str = (await ok(client, "warp_handle_get"))["agentGuid"]
    assert len(found) == 32
    return found


async def post_init(hc: httpx2.AsyncClient, url: str, token: str | None = None, **headers: str) -> httpx2.Response:
    """A raw initialize request: 200 once past authentication and the transport's checks."""
    sent = dict(MCP_HEADERS, **headers)
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    return await hc.post(url, json=INIT, headers=sent)


def metadata_url(base: str) -> str:
    return f"{base}/.well-known/oauth-protected-resource/mcp"


def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return str(path)
