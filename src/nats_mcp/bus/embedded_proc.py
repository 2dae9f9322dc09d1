"""The embedded server's process plumbing: the double-fork launcher, 0600 files, the log tail, and the probes (is a
pid our nats-server by its command line, has it ended, what does its INFO line say); Linux reads /proc,
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


def has_exited(pid: int) -> bool:
    """Whether the process ``pid`` has ended: no such process, or a zombie or dead task.

    Only the end of the process counts. A process that is alive but not (yet) our server is still starting: inside
    ``execve`` its ``/proc/<pid>/cmdline`` reads empty, and a wrapper script runs as its interpreter before it
    execs the server or fails. Taking either for an exit reported "exited at start" for a server that came up a
    moment later, or an empty log for one whose wrapper had not yet written its error.
    """
    if not Path("/proc/self").exists():  # no /proc (macOS)
        return not alive_ps(pid)
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return ended(stat_line)


def ended(stat_line: str) -> bool:
    """From ``/proc/<pid>/stat``: whether the task is a zombie or dead (the state follows the last ``)``)."""
    if ")" not in stat_line:
        return True
    return stat_line[stat_line.rindex(")") + 2 :][:1] in ("Z", "X", "")


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
