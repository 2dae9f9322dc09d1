"""A synchronously driven `nats-mcp serve --transport http` process and its API key, for Node-based clients."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import wait_for_sync

SERVER_START_TIMEOUT_S = 30


SERVER_STOP_TIMEOUT_S = 15


@dataclass
class HttpServer:
    """A running ``nats-mcp serve --transport http --port 0`` process."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve_http(
    tmp_path: Path, nats_url: str, *args: str, name: str = "serve", **extra_env: str
) -> Iterator[HttpServer]:
    """Start the HTTP server on an OS-assigned port (read from its port file) and stop it with SIGTERM."""
    run_dir = tmp_path / name
    run_dir.mkdir()
    port_file = run_dir / "port"
    log = run_dir / "serve.log"
    # The suite opens a session per scenario (~40 in seconds) with one credential and ends none: beyond the
    # per-credential session bounds, which tests/e2e/test_http_protocol.py tests.
    bounds = {"NATS_MCP_HTTP_MAX_SESSIONS_PER_PRINCIPAL": "1000", "NATS_MCP_HTTP_INITIALIZE_RATE_BURST": "1000"}
    env = isolated_env(tmp_path, NATS_URL=nats_url, NATS_MCP_HTTP_PORT_FILE=str(port_file), **bounds, **extra_env)
    cmd = [nats_mcp_exe(), "serve", "--transport", "http", "--host", "127.0.0.1", "--port", "0", *args]
    with log.open("wb") as sink:
        process = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
    try:

        def bound_port() -> int | None:
            if process.poll() is not None:
                raise AssertionError(f"serve exited {process.returncode} before listening:\n{log.read_text()}")
            text = port_file.read_text() if port_file.exists() else ""
            return int(text) if text.endswith("\n") else None

        port = wait_for_sync(bound_port, SERVER_START_TIMEOUT_S, message=lambda: f"no port file\n{log.read_text()}")
        yield HttpServer(process, f"http://127.0.0.1:{port}/mcp", log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def create_api_key(tmp_path: Path, nats_url: str, name: str) -> str:
    """``nats-mcp keys create --role agent`` against the server's NATS; the key alone is on stdout."""
    made = subprocess.run(
        [nats_mcp_exe(), "keys", "create", "--name", name, "--role", "agent"],
        env=isolated_env(tmp_path, NATS_URL=nats_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()
