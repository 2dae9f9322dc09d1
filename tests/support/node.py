"""Node 22 from scripts/node22, installed once for the Node-based MCP clients."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


NODE22 = ROOT / "scripts" / "node22"


INSTALL_TIMEOUT_S = 300


def node22(*args: str) -> str:
    """``scripts/node22 [args]``: installs Node 22, the Inspector and the conformance suite once; prints a path."""
    try:
        proc = subprocess.run(
            [str(NODE22), *args], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"scripts/node22 {' '.join(args)} could not run: {exc!r}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/node22 {' '.join(args)} exited {proc.returncode}\n{proc.stderr}", pytrace=False)
    return proc.stdout.strip()
