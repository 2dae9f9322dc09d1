"""Unit tests of the embedded-server boundary's files and policies (no server process started)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nats_mcp.bus.embedded import (
    EmbeddedInfo,
    EmbeddedNats,
    InsecureFileError,
    ServerBinaryNotFoundError,
)
from nats_mcp.bus.embedded_proc import ended as _ended
from nats_mcp.bus.embedded_proc import has_exited as _has_exited


def test_config_binds_loopback_and_holds_the_token(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "d")
    text = server._config_text("tok_en-1", -1)
    assert 'listen: "127.0.0.1:-1"' in text
    assert 'authorization { token: "tok_en-1" }' in text
    assert f'jetstream {{ store_dir: "{server.data_dir}" }}' in text
    assert f'pid_file: "{server.pid_path}"' in text
    assert f'log_file: "{server.log_path}"' in text


def test_token_is_made_once_private_and_reused(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "d")
    server._prepare_dir()
    first = server._token()
    assert len(first) >= 40
    assert stat.S_IMODE(server.token_path.stat().st_mode) == 0o600
    assert server._token() == first
    assert server._read_token() == first


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_token_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    server = EmbeddedNats(tmp_path / "d")
    server._prepare_dir()
    server._token()
    server.token_path.chmod(mode)
    with pytest.raises(InsecureFileError, match=f"{mode:04o}"):
        server._read_token()
    assert stat.S_IMODE(server.token_path.stat().st_mode) == mode


def test_token_symlink_is_refused(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "d")
    server._prepare_dir()
    target = tmp_path / "elsewhere"
    target.write_text("x\n")
    target.chmod(0o600)
    server.token_path.symlink_to(target)
    with pytest.raises(InsecureFileError):
        server._read_token()


def test_data_dir_is_made_or_tightened_to_0700(tmp_path: Path) -> None:
    fresh = EmbeddedNats(tmp_path / "a" / "b")
    fresh._prepare_dir()
    assert stat.S_IMODE(fresh.data_dir.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o755)
    EmbeddedNats(loose)._prepare_dir()
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_world_writable_data_dir_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(InsecureFileError, match="world-writable"):
        EmbeddedNats(shared)._prepare_dir()


def test_status_of_a_never_started_dir_creates_nothing(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "never")
    status = server.status()
    assert (status.running, status.url, status.pid) == (False, None, None)
    assert not server.data_dir.exists()
    assert server.stop() is False
    assert not server.data_dir.exists()
    assert set(status.as_dict()) >= {"running", "url", "pid", "data_dir"}


def test_own_process_is_never_taken_for_the_server(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "d")
    assert server._is_ours(os.getpid()) is False


def test_bad_server_bin_names_the_setting(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "d", server_bin=tmp_path / "nope")
    with pytest.raises(ServerBinaryNotFoundError, match="NATS_MCP_NATS_SERVER_BIN"):
        server.resolve_server_bin()


def test_default_server_bin_is_found(tmp_path: Path) -> None:
    path = EmbeddedNats(tmp_path / "d").resolve_server_bin()
    assert path.name == "nats-server"
    assert os.access(path, os.X_OK)


def test_info_repr_hides_the_token(tmp_path: Path) -> None:
    info = EmbeddedInfo("nats://127.0.0.1:4222", 1, "s3cr3t-token", tmp_path, True)
    assert "s3cr3t-token" not in repr(info)


def test_only_a_zombie_or_dead_task_counts_as_exited() -> None:
    # Inside execve (empty command line) or running a wrapper's interpreter, a process is still starting.
    assert _ended("4242 (nats-server) R 1 4242 4242 0 -1") is False
    assert _ended("4242 (nats) server) S 1 4242 4242 0 -1") is False  # the name may hold ") "
    assert _ended("4242 (sh) S 1 4242 4242 0 -1") is False
    assert _ended("4242 (nats-server) Z 1 4242 4242 0 -1") is True
    assert _ended("4242 (nats-server) X 1 4242 4242 0 -1") is True
    assert _ended("") is True


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="reads /proc")
def test_exited_and_running_processes_are_told_apart() -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    running = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        os.waitid(os.P_PID, exited.pid, os.WEXITED | os.WNOWAIT)  # it has exited, and stays a zombie (not reaped)
        assert _has_exited(exited.pid) is True
        assert running.stdout is not None and running.stdout.readline() == b"up\n"
        assert _has_exited(running.pid) is False  # alive, though not a nats-server
    finally:
        assert running.stdin is not None
        running.stdin.close()
        running.wait(10)
        exited.wait(10)
    assert _has_exited(exited.pid) is True  # reaped: no such process
