"""The embedded server's process plumbing: the double-fork launcher, 0600 files, the log tail, and the probes (is a
pid our nats-server by its command line, is it still starting, what does its INFO line say); Linux reads /proc,
macOS asks ``ps``. Used by :mod:`nats_mcp.bus.embedded`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nats_mcp.core.redact import redact

POLL_MIN, POLL_MAX = 0.005, 0.05
"""Bounds of the doubling poll delay while waiting on the server."""
PRIVATE_FILE = 0o600

# The intermediate process of the double fork: starts the server in its own session, prints its
# pid and exits, so the server is re-parented away from us and never becomes our zombie.
LAUNCHER = """\
import os, subprocess, sys
log = open(sys.argv[1], "ab")
p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                     start_new_session=True, close_fds=True)
sys.stdout.write(f"{p.pid}\\n"); sys.stdout.flush()
os._exit(0)
"""


def runs_config(pid: int, config: str) -> bool:
    """Whether ``pid`` is a live (not zombie) process whose argv is exactly ``<binary> -c <config>``."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()  # empty for a zombie
    except FileNotFoundError:
        return False if Path("/proc/self").exists() else runs_config_ps(pid, config)
    except OSError:
        return False
    argv = raw.rstrip(b"\0").split(b"\0")
    return len(argv) == 3 and argv[1:] == [b"-c", os.fsencode(config)]


def exec_pending(pid: int) -> bool:
    """Whether ``pid`` is alive but still inside ``execve``: its new command line is not readable yet.

    The launcher prints the pid as soon as its ``Popen`` returns, which the kernel allows before the new program's
    arguments are in place: ``/proc/<pid>/cmdline`` then reads empty, as a zombie's does. Taking that for an exit
    made a first start report "nats-server exited at start" for a server that was up a moment later.
    """
    proc = Path(f"/proc/{pid}")
    if not proc.parent.joinpath("self").exists():  # no /proc (macOS): ps shows the old command line meanwhile
        return alive_ps(pid)
    try:
        cmdline = (proc / "cmdline").read_bytes()
        return in_exec(cmdline, "" if cmdline else (proc / "stat").read_text())
    except OSError:
        return False


def in_exec(cmdline: bytes, stat_line: str) -> bool:
    """From ``/proc/<pid>/cmdline`` and ``/proc/<pid>/stat``: an empty command line of a task that has not exited."""
    if cmdline or ")" not in stat_line:
        return False  # another program (the pid was reused), or ours, which the caller has already checked
    return stat_line[stat_line.rindex(")") + 2 :][:1] not in ("Z", "X", "")  # zombie or dead: it has exited


def alive_ps(pid: int) -> bool:
    try:
        out = subprocess.run(
            ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(out) and not out.startswith("Z")


def runs_config_ps(pid: int, config: str) -> bool:
    """Without /proc (macOS): ps's command line, which must end with ``-c <config>``."""
    try:
        out = subprocess.run(
            ["ps", "-ww", "-o", "stat=", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(out) and not out.startswith("Z") and out.endswith(f" -c {config}")


def read_info(url: str, deadline: float) -> dict[str, Any] | None:
    """The server's INFO (read before any auth), polled until ``deadline``; None if it never answers."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        return None
    delay = POLL_MIN
    while True:
        remaining = deadline - time.monotonic()
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=max(0.2, min(1.0, remaining))) as s:
                buf = b""
                while b"\r\n" not in buf and len(buf) < 65536:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
            line = buf.split(b"\r\n", 1)[0]
            if line.startswith(b"INFO "):
                data = json.loads(line[5:])
                if isinstance(data, dict):
                    return data
        except (OSError, ValueError):
            pass
        if time.monotonic() + delay >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, POLL_MAX)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a 0600 file holding ``text``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def log_tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` lines of the server log (its last 4 KiB), on one line, redacted."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            text = fh.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return redact(" | ".join(text.strip().splitlines()[-lines:])) or "(empty log)"


class EarlyExit(Exception):
    """The server process died before it wrote its ports file."""


@dataclass(frozen=True)
class Found:
    """A running server found by its recorded or scanned pid."""

    pid: int
    url: str | None
    version: str | None
    started_at: str | None
    reachable: bool
