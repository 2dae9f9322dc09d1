"""Boundary of the ``ssh`` mechanism against a real OpenSSH server on loopback (tests/support/sshd.py): an agent
started detached on the "remote" host with the right environment, polled to its exit code, stopped by another
coordinator; no secret in any argv on either side nor in the logs; a wrong host key, a refused or missing key and
an unreachable host are clear, secret-free errors."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nats_mcp.fleet.mechanism import Exit, Handle, MechanismError, StartSpec
from nats_mcp.fleet.ssh import SshMechanism, SshSpec
from tests.support.fleet import SECRET, fleets, write_targets
from tests.support.natsserver import NatsServer, wait_for
from tests.support.sshd import Sshd, cmdlines, pid_running, sshd

ENV_SECRET = "env-secret-4b1f9a"
FILE_SECRET = "file-secret-7c2e0d"
NATS_SECRET = "nats-pass-19ad3e"
SECRETS = (ENV_SECRET, FILE_SECRET, NATS_SECRET)
COORDINATOR_ENV = {
    "COORD_TOKEN": ENV_SECRET,
    "NATS_USER": "agent",
    "NATS_PASS": NATS_SECRET,  # NATS credentials given by variables reach the agent ...
    "NATS_MCP_CONFIG": "/coordinator/only.yaml",  # ... not a path on the coordinator's host
    "UNRELATED": "not-forwarded",
}


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _spec(remote: Sshd, tmp: Path, command: list[str], **kw: object) -> SshSpec:
    fields: dict[str, object] = {
        "host": "127.0.0.1",
        "port": remote.port,
        "user": remote.user,
        "identityFile": remote.key,
        "knownHostsFile": remote.known_hosts,
        "command": command,
        "stateDir": str(tmp / "state"),
        "pollEveryS": 0,
        "stopTimeoutS": 5,
        **kw,
    }
    return SshSpec.model_validate(fields)


def _start(target: str, instance: str) -> StartSpec:
    env = {
        "NATS_URL": "nats://127.0.0.1:4222",
        "NATS_MCP_NAMESPACE": "fleet-ssh",
        "NATS_MCP_CONFIG": "/coordinator/only.yaml",
        "LOOMINAL_AGENT_ID": "a" * 32,
        "NATS_MCP_FLEET_INSTANCE": instance,
    }
    return StartSpec(target, instance, "a" * 32, f"{target}-{instance}", ("python",), env)


def _record_ssh_argv(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``ssh`` first on PATH that appends its argv to a file and runs the real one: what `ps` would show."""
    bindir, log = tmp / "bin", tmp / "ssh-argv.log"
    bindir.mkdir()
    wrapper = bindir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nprintf \'%s\\n\' "$@" >> {log}\nexec /usr/bin/ssh "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


async def test_detached_agent_env_poll_exit_code_stop_by_another_coordinator_no_secret_anywhere(
    remote: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    argv_log = _record_ssh_argv(tmp_path, monkeypatch)
    work = tmp_path / "work"
    work.mkdir()
    secret_file = tmp_path / "db-password"
    secret_file.write_text(FILE_SECRET + "\n")
    env = {"API_TOKEN": {"fromEnv": "COORD_TOKEN"}, "DB_PASSWORD": {"fromFile": str(secret_file)}}
    sleeper = _spec(
        remote,
        tmp_path,
        ["sh", "-c", "trap '' TERM; env > {instance}.tmp && mv {instance}.tmp {instance}.env; exec sleep 60"],
        cwd=str(work),
        env={**env, "WORK_MS": {"value": "5"}},
        log="{instance}.log",
        stopTimeoutS=1,  # it ignores SIGTERM: the stop ends it with SIGKILL after this
    )
    crasher = _spec(remote, tmp_path, ["sh", "-c", "exit 3"])
    specs = {"sleep": sleeper, "crash": crasher}
    mech = SshMechanism(specs, environ=COORDINATOR_ENV)

    handle = await mech.start(_start("sleep", "i1"))
    assert Handle.from_json(handle.to_json()) == handle
    assert {"target", "host", "port", "user", "instance", "stateDir", "pid", "pidStart"} <= set(handle.ref)
    assert (handle.ref["host"], handle.ref["port"], handle.ref["user"]) == ("127.0.0.1", remote.port, remote.user)
    pid = int(handle.ref["pid"])
    # the ssh session has ended; the agent runs on, in a session of its own (what a stop signals as a group)
    assert pid_running(pid) and os.getsid(pid) == pid
    written = await wait_for(lambda: (work / "i1.env").exists() and (work / "i1.env").read_text(), 10)
    agent_env = dict(line.split("=", 1) for line in written.splitlines() if "=" in line)
    assert agent_env["API_TOKEN"] == ENV_SECRET and agent_env["DB_PASSWORD"] == FILE_SECRET
    assert agent_env["NATS_PASS"] == NATS_SECRET and agent_env["NATS_USER"] == "agent"
    assert agent_env["LOOMINAL_AGENT_ID"] == "a" * 32 and agent_env["NATS_MCP_NAMESPACE"] == "fleet-ssh"
    assert agent_env["WORK_MS"] == "5"
    assert "NATS_MCP_CONFIG" not in agent_env and "UNRELATED" not in agent_env and "COORD_TOKEN" not in agent_env
    # no secret in any process's argv while it runs (the remote side is this machine), nor in what ssh was given
    running = b"\n".join(cmdlines())
    assert b"exec sleep 60" in running  # the scan does see the agent's command line
    assert not [s for s in SECRETS if s.encode() in running]
    given = argv_log.read_text()
    assert "StrictHostKeyChecking=yes" in given and "BatchMode=yes" in given
    assert not [s for s in SECRETS if s in given]

    heir = SshMechanism(specs, environ={})  # another coordinator (any host with the same key and known hosts)
    assert await heir.poll(handle) is True
    await heir.stop(handle)
    assert not pid_running(pid)  # killed: it ignored the SIGTERM
    assert await heir.poll(handle) == Exit(None)  # stopped: gone, its record removed

    crash = await mech.start(_start("crash", "i2"))

    async def ended() -> Exit | None:
        state = await heir.poll(crash)
        return state if isinstance(state, Exit) else None

    assert await wait_for(ended, 15) == Exit(3)  # the exit code, known to any coordinator

    nowhere = SshMechanism({"x": _spec(remote, tmp_path, ["sh", "-c", "true"], cwd="/nonexistent/dir")})
    with pytest.raises(MechanismError, match="cannot change to the working directory '/nonexistent/dir'"):
        await nowhere.start(_start("x", "i3"))
    missing = SshMechanism({"x": _spec(remote, tmp_path, ["/nonexistent/agent"])})
    with pytest.raises(MechanismError, match="command '/nonexistent/agent' not found on the host"):
        await missing.start(_start("x", "i4"))
    assert not [s for s in SECRETS if s in caplog.text]


async def test_host_key_and_client_key_refusals_and_unreachable_are_clear_and_secret_free(
    remote: Sshd, tmp_path: Path
) -> None:
    unknown = tmp_path / "empty_known_hosts"
    unknown.write_text("")
    secret_env = {"API_TOKEN": {"fromEnv": "COORD_TOKEN"}}
    loose = tmp_path / "loose_key"  # the accepted key, readable by others
    loose.write_bytes(remote.key.read_bytes())
    loose.chmod(0o644)
    closed = remote.port  # a port nothing listens on: found free, then released
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    cases = [
        ({"knownHostsFile": remote.wrong_known_hosts}, "host key not accepted: missing from"),
        ({"knownHostsFile": unknown}, "host key not accepted: missing from"),
        ({"identityFile": remote.other_key}, f"the host refused the key {remote.other_key}"),
        ({"identityFile": loose}, f"identityFile {loose} is readable by others: ssh ignores it \\(chmod 600\\)"),
        ({"identityFile": tmp_path / "no-key"}, "identityFile .*no-key cannot be read \\(No such file or directory\\)"),
        ({"port": closed}, "unreachable \\(connection refused\\)"),
    ]
    for change, message in cases:
        spec = _spec(remote, tmp_path, ["sh", "-c", "sleep 60"], env=secret_env, **change)
        mech = SshMechanism({"t": spec}, environ=COORDINATOR_ENV)
        with pytest.raises(MechanismError, match=message) as refused:
            await mech.start(_start("t", "i1"))
        assert str(refused.value).startswith("ssh start on "), refused.value
        assert not [s for s in SECRETS if s in str(refused.value)]
    assert not (tmp_path / "state").exists()  # refused before anything ran on the host


async def test_fleet_run_starts_an_ssh_target_and_stops_it_when_stopped(
    remote: Sshd, tmp_path: Path, nats_server: NatsServer
) -> None:
    """The wiring end to end: `nats-mcp fleet run` keeps `min: 1` of an ssh target running with the agent
    environment (NATS settings, identity, the target's secret) and, stopped cleanly, stops it over ssh."""
    work = tmp_path / "work"
    work.mkdir()
    ssh = _spec(
        remote,
        tmp_path,
        [
            "sh",
            "-c",
            "trap 'echo TERM > {instance}.term; exit 0' TERM; env > {instance}.tmp && mv {instance}.tmp {instance}.env;"
            " sleep 60 & wait",
        ],
        cwd=str(work),
        env={"API_TOKEN": {"fromEnv": "FLEET_SECRET"}},
    ).model_dump(mode="json", by_alias=True)
    target = {"name": "far", "capabilities": ["python"], "min": 1, "max": 1, "startupGraceS": 120}
    targets = write_targets(tmp_path / "fleet.yaml", [{**target, "mechanism": "ssh", "ssh": ssh}])
    async with fleets(tmp_path, nats_server, "fleet-ssh", targets, 1) as (fleet,):
        written = await wait_for(lambda: next(work.glob("*.env"), None), 60, message=fleet.text)
        agent_env = dict(line.split("=", 1) for line in written.read_text().splitlines() if "=" in line)
        assert agent_env["API_TOKEN"] == SECRET and agent_env["NATS_URL"] == nats_server.url
        assert agent_env["NATS_MCP_NAMESPACE"] == "fleet-ssh" and agent_env["NATS_MCP_FLEET_TARGET"] == "far"
        marker = f"NATS_MCP_FLEET_INSTANCE={written.stem}".encode()
        assert _with_env(marker)
    assert fleet.proc.returncode == 0
    assert not _with_env(marker)  # the coordinator stopped what it started, over ssh ...
    assert (work / f"{written.stem}.term").read_text() == "TERM\n"  # ... with a SIGTERM first
    assert SECRET not in fleet.text()


def _with_env(marker: bytes) -> list[int]:
    """Running processes whose environment holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pid_running(int(entry.name)):
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found
