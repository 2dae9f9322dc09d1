"""Test boundary for settings: an environment isolated from the developer's home, and settings built from it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.config.loader import load_settings
from nats_mcp.config.settings import Settings

BIN_DIR = Path(sys.executable).parent
"""The scripts directory of the interpreter running the tests (the venv's bin/, even when not activated)."""


def nats_mcp_exe() -> str:
    """The installed ``nats-mcp`` console script of this environment."""
    exe = BIN_DIR / "nats-mcp"
    assert exe.exists(), f"nats-mcp is not installed next to {sys.executable}: run scripts/bootstrap test"
    return str(exe)


COVERAGE_VARS = ("COVERAGE_PROCESS_START", "COVERAGE_FILE")
"""Passed on to children when set: under scripts/coverage every process the tests start is measured too."""


def coverage_env() -> dict[str, str]:
    """The coverage variables of this process (none outside scripts/coverage)."""
    return {name: os.environ[name] for name in COVERAGE_VARS if name in os.environ}


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """PATH plus a private HOME, XDG dirs and project path: nothing of the developer's setup leaks in (only the
    coverage variables, which measure the child and change nothing it does)."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        **coverage_env(),
        "PATH": os.pathsep.join([str(BIN_DIR), os.environ.get("PATH", "")]),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "MCP_PROJECT_PATH": str(tmp_path),
        "NATS_MCP_NATS_CONNECT_TIMEOUT_S": "3",
        **extra,
    }


def settings_for(tmp_path: Path, **extra: str) -> Settings:
    """Settings as a process with this environment would load them."""
    return load_settings(environ=isolated_env(tmp_path, **extra)).settings


@contextlib.asynccontextmanager
async def connected(tmp_path: Path, url: str, **extra: str) -> AsyncIterator[NatsConnection]:
    """A started, connected NatsConnection to ``url`` (closed on exit)."""
    conn = NatsConnection(settings_for(tmp_path, NATS_URL=url, **extra))
    conn.start()
    try:
        assert await conn.wait_connected(10), conn.status()
        yield conn
    finally:
        await conn.close()


async def stop_serve(
    proc: asyncio.subprocess.Process, what: str, stderr: Callable[[], str], sig: signal.Signals, timeout: float
) -> int:
    """Signal a serve child and wait for its exit code; one that does not stop is killed and fails the test."""
    if proc.returncode is None:
        proc.send_signal(sig)
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{what} did not stop on {sig.name}:\n{stderr()[-3000:]}") from None
