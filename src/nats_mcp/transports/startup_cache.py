"""Start-up cache boundary: the stdio server's handshake answers on disk, keyed by everything they depend on.

The answers to ``initialize``, ``server/discover`` and ``tools/list`` depend on the code (ours and the SDK's), the
settings (argv, the environment, the config files found or not found) and the policy file, and on nothing a
session does. They are written once by the SDK itself (transports/stdio_capture.py) and read back by the next
``nats-mcp serve`` before anything heavier than ``json`` is imported (transports/stdio_front.py). Only the standard
library is imported here: this module runs on the path the cache exists to shorten.

An entry is used only when its key matches (the code's files by size and mtime, the interpreter, argv, the
environment variables settings read, the working directory, the user) and every file it lists still has the
content hash it had (a file that was absent must still be absent). Anything else, a corrupt file or another
format, is a miss: the session is then served by the SDK from its first message, as without the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 1
"""The entry layout; an entry of another format is not read."""

ENV_PREFIXES = ("NATS_", "MCP_", "LOOMINAL_", "LOG_", "WORKQUEUE_", "OTEL_", "XDG_")
"""Environment variables that settings (config/leaves.py: ``NATS_MCP_*`` and Warp's names), tracing or the file
locations read; tests/unit/transports/test_startup_cache.py checks every settings name matches one."""
ENV_NAMES = ("HOME", "USER", "LOGNAME")
MAX_ENTRIES = 8
"""Entries kept (~250 kB each): the least recently used beyond these are removed when one is written, so
configurations that never repeat (a fleet's agents, each with its own instance variables) cannot fill the disk."""

_CODE_PACKAGES = ("nats_mcp", "mcp", "mcp_types", "pydantic", "pydantic_core")
"""Whose files make the answers: ours by every module, the others by their top-level files (a reinstall
rewrites them)."""


def _package_dir(name: str) -> Path | None:
    """Where a package lives, found without importing it (sys.path order, as the import system would)."""
    for entry in sys.path:
        candidate = Path(entry or ".") / name
        if (candidate / "__init__.py").is_file():
            return candidate
    return None


def _code_stamp() -> list[Any]:
    stamp: list[Any] = [sys.version, sys.executable]
    for name in _CODE_PACKAGES:
        root = _package_dir(name)
        if root is None:
            stamp.append([name, None])
            continue
        files: list[Any] = [name, str(root)]
        walk = os.walk(root) if name == "nats_mcp" else [(str(root), [], os.listdir(root))]
        for folder, dirs, names in walk:
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for file in sorted(names):
                if file.endswith((".py", ".so", ".typed")):
                    st = os.stat(os.path.join(folder, file))
                    files.append([os.path.relpath(os.path.join(folder, file), root), st.st_size, st.st_mtime_ns])
        stamp.append(files)
        if name == "mcp":  # every installed distribution by name and version (ours too: its version is in serverInfo)
            stamp.append(sorted(n for n in os.listdir(root.parent) if n.endswith(".dist-info")))
    return stamp


def cache_key(argv: list[str], environ: dict[str, str] | None = None, secret: bytes | None = None) -> str:
    """The key of this process's answers: argv, the environment settings read, code, directory and user.

    The environment holds secrets (a NATS password, a token), so the key is an HMAC under the cache's own random
    secret (:func:`local_secret`), never a bare hash a reader of the file names could test guesses against.
    """
    env = os.environ if environ is None else environ
    relevant = sorted((k, v) for k, v in env.items() if k.startswith(ENV_PREFIXES) or k in ENV_NAMES)
    material = [FORMAT, argv, relevant, os.getcwd(), os.getuid(), _code_stamp()]
    keyed = local_secret(cache_dir(env)) if secret is None else secret
    return hmac.new(keyed, json.dumps(material, separators=(",", ":")).encode(), hashlib.sha256).hexdigest()


KEY_FILE = "secret"
SECRET_BYTES = 32


def private(path: Path, st: os.stat_result | None = None) -> bool:
    """Whether ``path`` is the user's own and nobody else may write it (a cache others can write is not trusted)."""
    st = path.stat() if st is None else st
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def local_secret(folder: Path) -> bytes:
    """The cache's random key (made on first use, 0600 in the 0700 folder); OSError when it cannot be had safely."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not private(folder):
        raise PermissionError(f"{folder} is not private to this user")
    path = folder / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(SECRET_BYTES))
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        data = f.read()
    if not private(path, st) or st.st_mode & 0o077 or len(data) != SECRET_BYTES:
        raise PermissionError(f"{path} is not a private {SECRET_BYTES}-byte key")  # (a writer mid-way: a miss)
    return data


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or str(Path.home()), ".cache")
    return Path(base) / "nats-mcp" / "startup"


def file_hash(path: str) -> str | None:
    """The content hash of a file, or None when there is none (absent, a directory, unreadable)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


@dataclass(frozen=True)
class Entry:
    """The recorded answers: ``initialize`` by negotiated revision, ``server/discover`` and ``tools/list`` by
    revision, ``ping`` by handshake revision (each the JSON text of the ``result`` exactly as the SDK wrote it), and
    the revisions the SDK serves."""

    handshake_versions: tuple[str, ...]
    latest_handshake: str
    modern_versions: tuple[str, ...]
    initialize: dict[str, str]
    discover: dict[str, str]
    tools_list: dict[str, str]
    ping: dict[str, str]

    def negotiate(self, requested: Any) -> str:
        """The SDK's rule (runner.py ``_negotiate_initialize``): the client's revision if served, else the latest."""
        return requested if requested in self.handshake_versions else self.latest_handshake


def _entry_of(data: Any, key: str) -> Entry | None:
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
        return None
    deps = data.get("deps")
    if not isinstance(deps, dict) or any(file_hash(path) != digest for path, digest in deps.items()):
        return None  # a config or policy file changed, appeared or went away
    a = data.get("answers")
    if not isinstance(a, dict):
        return None
    try:
        entry = Entry(
            tuple(a["handshake_versions"]),
            a["latest_handshake"],
            tuple(a["modern_versions"]),
            dict(a["initialize"]),
            dict(a["discover"]),
            dict(a["tools_list"]),
            dict(a["ping"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    texts = [*entry.initialize.values(), *entry.discover.values(), *entry.tools_list.values(), *entry.ping.values()]
    if not all(isinstance(t, str) for t in texts) or entry.latest_handshake not in entry.initialize:
        return None
    return entry


def load(key: str, directory: Path | None = None) -> Entry | None:
    """The entry for ``key`` if one is there, whole, of this format, and its files unchanged; else None."""
    path = (directory or cache_dir()) / f"{key}.json"
    try:
        with open(path, "rb") as f:
            if not private(path, os.fstat(f.fileno())) or not private(path.parent):
                return None  # answers a client would trust: only from a file and folder no one else can write
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    entry = _entry_of(data, key)
    if entry is not None:
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: kept by store()'s eviction
    return entry


def store(key: str, deps: dict[str, str | None], answers: dict[str, Any], directory: Path | None = None) -> Path:
    """Write an entry atomically (a reader sees the old file or the new one), private to the user."""
    folder = directory or cache_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"format": FORMAT, "key": key, "deps": deps, "answers": answers}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
        target = folder / f"{key}.json"
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _evict(folder)
    return target


def _evict(folder: Path) -> None:
    """Remove the least recently used entries beyond :data:`MAX_ENTRIES` (a concurrent writer's are fine to lose)."""
    entries = []
    for path in folder.glob("*.json"):
        with contextlib.suppress(OSError):
            entries.append((path.stat().st_mtime_ns, path))
    for _, path in sorted(entries, reverse=True)[MAX_ENTRIES:]:
        with contextlib.suppress(OSError):
            path.unlink()
