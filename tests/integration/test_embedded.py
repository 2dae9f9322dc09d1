"""Boundary tests of the embedded local nats-server: real `nats-mcp nats ...` processes, a real nats-server."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from nats_mcp.bus.embedded import EmbeddedNats

CLI_TIMEOUT = 60.0
_SCRUB_PREFIXES = ("NATS_MCP_", "NATS_", "LOOMINAL_", "MCP_PROJECT_PATH", "WORKQUEUE_", "LOG_")


@dataclass
class Sandbox:
    """One isolated user: its own XDG dirs and HOME, so its own embedded server."""

    root: Path
    env: dict[str, str]
    data_dir: Path

    @property
    def server(self) -> EmbeddedNats:
        return EmbeddedNats(self.data_dir)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "nats_mcp.cli.main", *args],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.popen(*args)
        stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    def cli_json(self, *args: str) -> dict[str, Any]:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        assert isinstance(data, dict)
        return data


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    for name in ("home", "config", "data"):
        (tmp_path / name).mkdir()
    env.update(
        HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data")
    )
    box = Sandbox(tmp_path, env, tmp_path / "data" / "nats-mcp")
    try:
        yield box
    finally:
        box.server.stop(timeout=15)
        assert server_pids(box.server) == [], "a nats-server outlived the test"


def server_pids(server: EmbeddedNats) -> list[int]:
    """Live (non-zombie) processes whose command line is ``<bin> -c <this data dir's config>``."""
    want = [b"-c", os.fsencode(str(server.config_path))]
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        if argv[1:] == want:
            pids.append(int(entry.name))
    return sorted(pids)


def proc_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(ip, port) of every TCP socket in LISTEN state that ``pid`` holds, IPv4 and IPv6."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                continue
            hex_ip, hex_port = cols[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints the address as host-order 32-bit words.
            ip_bytes = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((socket.inet_ntop(family, ip_bytes), int(hex_port, 16)))
    return found


def test_five_simultaneous_starts_leave_exactly_one_server(sandbox: Sandbox) -> None:
    procs = [sandbox.popen("nats", "start", "--json") for _ in range(5)]
    results = [(p, *p.communicate(timeout=CLI_TIMEOUT)) for p in procs]
    for proc, _, stderr in results:
        assert proc.returncode == 0, stderr
    outputs = [json.loads(stdout) for _, stdout, _ in results]
    assert len({o["url"] for o in outputs}) == 1, outputs
    assert len({o["pid"] for o in outputs}) == 1, outputs
    assert sum(o["started"] for o in outputs) == 1, "exactly one of them should have started it"
    assert server_pids(sandbox.server) == [outputs[0]["pid"]]


def test_listens_on_loopback_only(sandbox: Sandbox) -> None:
    started = sandbox.cli_json("nats", "start")
    url, pid = started["url"], started["pid"]
    assert url.startswith("nats://127.0.0.1:")
    port = int(url.rsplit(":", 1)[1])
    assert listening_addresses(pid) == [("127.0.0.1", port)]
    config = sandbox.server.config_path.read_text()
    assert '"127.0.0.1:' in config
    for listener in ("http", "https", "cluster", "leafnodes", "gateway", "websocket", "mqtt"):
        assert listener not in config


def test_files_are_private_and_the_token_never_shows(sandbox: Sandbox) -> None:
    start = sandbox.cli("nats", "start")
    assert start.returncode == 0, start.stderr
    server = sandbox.server
    token = server.token_path.read_text().strip()
    assert len(token) >= 40
    assert stat.S_IMODE(server.token_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.config_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(sandbox.data_dir.stat().st_mode) == 0o700
    status = sandbox.cli("nats", "status", "--json")
    table = sandbox.cli("nats", "status")
    (pid,) = server_pids(server)
    for text in (
        start.stdout,
        start.stderr,
        status.stdout,
        status.stderr,
        table.stdout,
        table.stderr,
        Path(f"/proc/{pid}/cmdline").read_text(),
        Path(f"/proc/{pid}/environ").read_text(),
        server.state_path.read_text(),
        server.log_path.read_text(),
    ):
        assert token not in text
    assert json.loads(status.stdout)["running"] is True


async def test_token_grants_jetstream_and_its_absence_is_refused(sandbox: Sandbox) -> None:
    info = sandbox.server.ensure_running(timeout=15)
    nc = await nats.connect(info.url, token=info.token, allow_reconnect=False, connect_timeout=5)
    try:
        account = await nc.jetstream().account_info()
        assert account.api.level is None or account.api.level >= 1
    finally:
        await nc.close()

    async def quiet(_: Exception) -> None:
        return None

    for kwargs in ({}, {"token": "not-the-token"}):
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(
                info.url, allow_reconnect=False, connect_timeout=5, max_reconnect_attempts=0, error_cb=quiet, **kwargs
            )


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
def test_stop_stops_it_and_a_second_stop_is_fine(sandbox: Sandbox) -> None:
    pid = sandbox.cli_json("nats", "start")["pid"]
    stop = sandbox.cli("nats", "stop")
    assert stop.returncode == 0, stop.stderr
    assert "stopped" in stop.stdout
    assert server_pids(sandbox.server) == []
    assert not Path(f"/proc/{pid}").exists() or proc_stat(pid)[0] == "Z"  # gone, or a zombie of init
    status = sandbox.cli_json("nats", "status")
    assert status == {**status, "running": False, "url": None, "pid": None}
    assert not sandbox.server.state_path.exists()
    again = sandbox.cli("nats", "stop")
    assert again.returncode == 0, again.stderr
    assert "not running" in again.stdout


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("recorded", ["dead", "reused"])
def test_stale_state_is_recovered(sandbox: Sandbox, recorded: str) -> None:
    """A dead pid, or a live pid that is not our server (pid reuse), in server.json: start replaces it."""
    sandbox.data_dir.mkdir(parents=True, mode=0o700)
    pid = _dead_pid() if recorded == "dead" else os.getpid()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    stale_url = f"nats://127.0.0.1:{free.getsockname()[1]}"
    free.close()
    state = {"pid": pid, "url": stale_url, "port": 1, "started_at": "2020-01-01T00:00:00+00:00"}
    sandbox.server.state_path.write_text(json.dumps(state))
    sandbox.server.pid_path.write_text(f"{pid}\n")
    before = sandbox.cli_json("nats", "status")
    assert before["running"] is False
    started = sandbox.cli_json("nats", "start")
    assert started["started"] is True
    assert started["pid"] != pid
    assert server_pids(sandbox.server) == [started["pid"]]
    assert json.loads(sandbox.server.state_path.read_text())["pid"] == started["pid"]
    assert sandbox.cli("nats", "stop").returncode == 0  # must not signal the stale (reused) pid
    assert Path(f"/proc/{os.getpid()}").exists()


def test_server_survives_the_process_that_started_it(sandbox: Sandbox) -> None:
    starter = sandbox.popen("nats", "start", "--json")
    stdout, stderr = starter.communicate(timeout=CLI_TIMEOUT)
    assert starter.returncode == 0, stderr
    pid = json.loads(stdout)["pid"]
    # The starter has exited (and been reaped); the server lives on in its own session.
    assert server_pids(sandbox.server) == [pid]
    state, ppid, _, session = proc_stat(pid)[:4]
    assert state != "Z"
    assert int(ppid) not in (starter.pid, os.getpid())
    assert int(session) == pid != os.getsid(0)
    assert sandbox.cli_json("nats", "status")["running"] is True


def test_in_process_start_leaves_no_child_of_ours(sandbox: Sandbox) -> None:
    """Double fork: a long-running caller never gets the server as a child, so never a zombie of it."""
    info = sandbox.server.ensure_running(timeout=15)
    assert info.started is True
    assert int(proc_stat(info.pid)[1]) != os.getpid()
    again = sandbox.server.ensure_running(timeout=15)
    assert (again.url, again.pid, again.token, again.started) == (info.url, info.pid, info.token, False)
    assert sandbox.server.stop(timeout=15) is True
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and (p / "stat").exists()]
    zombies = []
    for p in children:
        try:
            fields = proc_stat(int(p.name))
        except (OSError, ValueError):
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            zombies.append(p.name)
    assert zombies == []
    assert sandbox.server.stop(timeout=15) is False


def test_restart_prefers_the_previous_port(sandbox: Sandbox) -> None:
    # A freed ephemeral port can be taken by any other process's outgoing connection before the restart
    # (a shared 2-core machine running other suites does this now and then), and then a new port is the
    # right answer. So: of three restarts, at least one must get the port back, and every one keeps the token.
    kept = []
    previous = sandbox.server.ensure_running(timeout=15)
    for _ in range(3):
        sandbox.server.stop(timeout=15)
        current = sandbox.server.ensure_running(timeout=15)
        assert current.pid != previous.pid
        assert current.token == previous.token
        kept.append(current.url == previous.url)
        previous = current
        if kept[-1]:
            break
    assert any(kept), "no restart got its previous port back"


def test_token_file_readable_by_others_is_refused(sandbox: Sandbox) -> None:
    sandbox.data_dir.mkdir(parents=True, mode=0o700)
    token_path = sandbox.server.token_path
    token_path.write_text("a-token-someone-may-have-read\n")
    token_path.chmod(0o644)
    start = sandbox.cli("nats", "start")
    assert start.returncode == 1
    assert "0644" in start.stderr
    assert str(token_path) in start.stderr
    assert "a-token-someone-may-have-read" not in start.stderr + start.stdout
    assert server_pids(sandbox.server) == []
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o644  # not silently "fixed"


def test_missing_binary_fails_with_a_hint(sandbox: Sandbox) -> None:
    sandbox.env["NATS_MCP_NATS_SERVER_BIN"] = str(sandbox.root / "no-such-nats-server")
    start = sandbox.cli("nats", "start")
    assert start.returncode == 1
    assert "NATS_MCP_NATS_SERVER_BIN" in start.stderr
    assert "nats-server-bin" in start.stderr
    assert server_pids(sandbox.server) == []


def test_a_first_start_raises_no_false_alarm(sandbox: Sandbox) -> None:
    # A fresh data directory, no previous port: the path where a server still inside execve read as exited.
    start = sandbox.cli("nats", "start")
    assert start.returncode == 0, start.stderr
    assert "nats-server started" in start.stdout and "exited at start" not in start.stderr


def test_a_server_that_exits_at_start_is_reported_with_its_log(sandbox: Sandbox) -> None:
    failing = sandbox.root / "failing-nats-server"
    # A wrapper that takes a moment before it fails: alive as /bin/sh meanwhile, which is no exit yet.
    failing.write_text(
        "#!/bin/sh\nsleep 0.3\necho 'nats-server: config line 3: this server cannot start' >&2\nexit 1\n"
    )
    failing.chmod(0o700)
    sandbox.env["NATS_MCP_NATS_SERVER_BIN"] = str(failing)
    start = sandbox.cli("nats", "start")
    assert start.returncode == 1
    assert "nats-server exited at start; its log says: nats-server: config line 3: this server cannot start" in (
        " ".join(start.stderr.split())
    )
