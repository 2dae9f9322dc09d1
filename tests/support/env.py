"""Test boundary for settings: an environment isolated from the developer's home, and settings built from it."""

from __future__ import annotations

import os
from pathlib import Path

from nats_mcp.config import Settings, load_settings


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """PATH plus a private HOME, XDG dirs and project path: nothing of the developer's setup leaks in."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", ""),
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
