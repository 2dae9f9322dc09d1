"""The ``ssh`` mechanism boundary: a target's command template run on a remote host through the system OpenSSH client.

Each start, poll and stop is one ``ssh`` run with options that leave no room for trust on first use or a prompt
(``BatchMode=yes``, ``StrictHostKeyChecking=yes`` against the target's own known-hosts file, only the target's key,
no agent, no forwarding, no user ssh config). The remote side is a fixed POSIX shell script (``ssh_remote.py``):
it starts the agent detached (its own session, surviving the ssh session) and prints its pid and the pid's start
time, which the :class:`Handle` keeps with host, port and user, so any coordinator holding the same key and
known-hosts file can poll and stop it. Secrets never go into an argv on either side: the agent's environment
travels on the session's standard input. The system ``ssh`` is used rather than a Python SSH library so that host
keys, key formats and ciphers are OpenSSH's own and no dependency is added.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from nats_mcp.fleet.mechanism import Exit, Handle, MechanismError, StartSpec
from nats_mcp.fleet.specparts import (
    ENV_NAME,
    EnvValue,
    SpecModel,
    check_command,
    check_env,
    check_placeholders,
    resolve_env,
)
from nats_mcp.fleet.ssh_remote import ERRORS, POLL, START, STOP, SUPERVISE, env_script, remote_command

log = logging.getLogger("nats_mcp.fleet")

_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")  # a name or an address; never an option ("-o...")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_LOG_PLACEHOLDERS = frozenset({"target", "instance", "agent_name"})
_SSH_ERR = 255  # ssh's own failures (connection, authentication); anything else is the remote script's


class SshSpec(SpecModel):
    """The ``ssh`` mechanism: a command template run on ``user@host`` over OpenSSH, the host key checked."""

    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str
    identity_file: Path = Field(alias="identityFile")
    known_hosts_file: Path = Field(alias="knownHostsFile")
    command: list[str] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, EnvValue] = Field(default_factory=dict)
    log: str = "/dev/null"
    state_dir: str = Field(default="~/.nats-mcp-fleet", min_length=1, alias="stateDir")
    stop_timeout_s: float = Field(default=10.0, gt=0, le=300, alias="stopTimeoutS")
    connect_timeout_s: int = Field(default=10, ge=1, le=300, alias="connectTimeoutS")
    poll_every_s: float = Field(default=5.0, ge=0, le=3600, alias="pollEveryS")

    @model_validator(mode="after")
    def _checks(self) -> SshSpec:
        if not _HOST.match(self.host):
            raise ValueError(f"host {self.host!r} is not a host name or address")
        if not _USER.match(self.user):
            raise ValueError(f"user {self.user!r} is not a user name")
        if not (self.state_dir.startswith(("/", "~/")) or self.state_dir == "~"):
            raise ValueError("stateDir must be absolute or start with ~/ (a start and a poll run in other directories)")
        check_command(self.command)
        check_placeholders([self.log], _LOG_PLACEHOLDERS, "log")
        check_env(self.env)
        return self


def forwarded_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What of the coordinator's own environment an ssh agent gets: the NATS settings (``NATS_*``, which holds
    ``NATS_MCP_*``) and the project id, so credentials given by variables reach it as they reach a local agent;
    not ``NATS_MCP_CONFIG`` (a path on the coordinator's host) nor the rest (PATH, HOME ... are the remote's)."""
    return {
        k: v
        for k, v in environ.items()
        if (k.startswith("NATS_") or k == "LOOMINAL_PROJECT_ID") and k != "NATS_MCP_CONFIG" and ENV_NAME.match(k)
    }


class SshMechanism:
    """Agents on remote hosts for the targets' ``ssh`` sections (``specs``: target name -> its section)."""

    name = "ssh"

    def __init__(self, specs: dict[str, SshSpec], environ: Mapping[str, str] | None = None) -> None:
        import os

        self.specs = specs
        self.environ = dict(os.environ if environ is None else environ)
        self._seen: dict[tuple[str, int, str, int], float] = {}  # running, checked at (monotonic)

    async def start(self, spec: StartSpec) -> Handle:
        ssh = self.specs[spec.target]
        values = spec.placeholders
        argv = spec.command(ssh.command)
        log_file = ssh.log.format_map(values)
        env = {**forwarded_env(self.environ), **spec.env}
        env.pop("NATS_MCP_CONFIG", None)
        env.update(resolve_env(ssh, self.environ))
        args = [SUPERVISE, ssh.cwd or "", log_file, ssh.state_dir, spec.instance, *argv]
        code, out = await self._ssh(ssh, ssh.host, ssh.port, ssh.user, START, args, env_script(env), "start")
        if (m := re.search(r"NMCP-STARTED (\d+) (\d+)", out)) is not None:
            ref: dict[str, Any] = {
                "target": spec.target,
                "host": ssh.host,
                "port": ssh.port,
                "user": ssh.user,
                "instance": spec.instance,
                "stateDir": ssh.state_dir,
                "pid": int(m[1]),
                "pidStart": m[2],
            }
            return Handle(self.name, ref)
        if (e := re.search(r"NMCP-ERR (\w+)", out)) is not None and e[1] in ERRORS:
            why = ERRORS[e[1]].format(cwd=ssh.cwd, command=argv[0], log=log_file, state=ssh.state_dir)
            raise MechanismError(f"ssh start on {_where(ssh.user, ssh.host, ssh.port)}: {why}")
        raise MechanismError(f"ssh start on {_where(ssh.user, ssh.host, ssh.port)}: no answer (exit code {code})")

    async def poll(self, handle: Handle) -> Exit | bool | None:
        ssh, ref = self.specs.get(str(handle.ref.get("target"))), handle.ref
        if ssh is None or "pid" not in ref:
            return None  # a target no longer in the file: its key and known hosts are unknown here
        key = (str(ref["host"]), int(ref["port"]), str(ref["instance"]), int(ref["pid"]))
        seen = self._seen.get(key)
        if seen is not None and time.monotonic() - seen < ssh.poll_every_s:
            return True  # one ssh run per instance per pollEveryS, not per round
        args = [str(ref["pid"]), str(ref["pidStart"]), str(ref["stateDir"]), str(ref["instance"])]
        try:
            _, out = await self._ssh(ssh, key[0], key[1], str(ref["user"]), POLL, args, b"", "poll")
        except MechanismError as exc:
            log.warning("%s; the registry presence decides meanwhile", exc)
            return None
        if "NMCP-RUNNING" in out:
            self._seen[key] = time.monotonic()
            return True
        self._seen.pop(key, None)
        if (m := re.search(r"NMCP-EXIT (\d+)", out)) is not None:
            return Exit(int(m[1]))
        if "NMCP-GONE" in out:
            return Exit(None)
        return None

    async def stop(self, handle: Handle) -> None:
        ssh, ref = self.specs.get(str(handle.ref.get("target"))), handle.ref
        if ssh is None or "pid" not in ref:
            return
        wait_s = math.ceil(ssh.stop_timeout_s)
        args = [str(ref["pid"]), str(ref["pidStart"]), str(ref["stateDir"]), str(ref["instance"]), str(wait_s)]
        self._seen.pop((str(ref["host"]), int(ref["port"]), str(ref["instance"]), int(ref["pid"])), None)
        try:
            await self._ssh(ssh, str(ref["host"]), int(ref["port"]), str(ref["user"]), STOP, args, b"", "stop", wait_s)
        except MechanismError as exc:  # the host away: nothing more to do from here; say so
            log.warning("%s; instance %s may still run", exc, ref["instance"])

    def check_files(self) -> list[str]:
        """Problems a start would hit with the key and known-hosts files (for `fleet run` to refuse at once)."""
        found: list[str] = []
        for name, ssh in self.specs.items():
            for what, path in (("identityFile", ssh.identity_file), ("knownHostsFile", ssh.known_hosts_file)):
                if (why := _unreadable(path)) is not None:
                    found.append(f"target {name}: {what} {path} cannot be read ({why})")
        return found

    async def _ssh(
        self,
        ssh: SshSpec,
        host: str,
        port: int,
        user: str,
        script: str,
        args: list[str],
        stdin: bytes,
        what: str,
        extra_s: float = 0,
    ) -> tuple[int, str]:
        """One ssh run: (its exit code, its standard output); MechanismError for ssh's own failures."""
        where = _where(user, host, port)
        for option, path in (("identityFile", ssh.identity_file), ("knownHostsFile", ssh.known_hosts_file)):
            if (why := _unreadable(path)) is not None:
                raise MechanismError(f"ssh {what} on {where}: {option} {path} cannot be read ({why})")
        argv = [*_ssh_argv(ssh, host, port, user), remote_command(script, args)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # a terminal's Ctrl-C goes to the coordinator, which stops cleanly
            )
        except OSError as exc:
            raise MechanismError(f"cannot run ssh: {exc.strerror}") from None
        limit = ssh.connect_timeout_s + 20 + extra_s
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise MechanismError(f"ssh {what} on {where}: no answer within {limit:g}s") from None
        code = proc.returncode if proc.returncode is not None else -1
        if code == _SSH_ERR:
            raise MechanismError(f"ssh {what} on {where}: {_ssh_failure(err.decode(errors='replace'), ssh)}")
        return code, out.decode(errors="replace")


def _ssh_argv(ssh: SshSpec, host: str, port: int, user: str) -> list[str]:
    options = {
        "BatchMode": "yes",  # never a prompt (password, passphrase, host key)
        "StrictHostKeyChecking": "yes",  # an unknown or changed host key is refused: no trust on first use
        "UserKnownHostsFile": str(ssh.known_hosts_file.absolute()),
        "GlobalKnownHostsFile": "/dev/null",
        "CheckHostIP": "no",
        "UpdateHostKeys": "no",  # the known-hosts file is the operator's, not ssh's to rewrite
        "IdentityFile": str(ssh.identity_file.absolute()),
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "ForwardAgent": "no",
        "ForwardX11": "no",
        "ClearAllForwardings": "yes",
        "ControlMaster": "no",
        "ControlPath": "none",
        "ConnectTimeout": str(ssh.connect_timeout_s),
        "ServerAliveInterval": "15",
        "LogLevel": "ERROR",
    }
    argv = ["ssh", "-F", "none", "-T", "-e", "none", "-p", str(port), "-l", user]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    return [*argv, "--", host]


def _ssh_failure(stderr: str, ssh: SshSpec) -> str:
    """ssh's own error in words that say what to fix (ssh never prints the session's input)."""
    if "Host key verification failed" in stderr or "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return f"host key not accepted: missing from {ssh.known_hosts_file} or changed (refused, never trusted)"
    if "UNPROTECTED PRIVATE KEY FILE" in stderr or "bad permissions" in stderr:
        return f"identityFile {ssh.identity_file} is readable by others: ssh ignores it (chmod 600)"
    if "Permission denied" in stderr:
        return f"the host refused the key {ssh.identity_file}"
    for phrase in (
        "Connection refused",
        "Connection timed out",
        "timed out",
        "No route to host",
        "Network is unreachable",
        "Could not resolve hostname",
        "Connection closed",
        "Connection reset",
    ):
        if phrase.lower() in stderr.lower():
            return f"unreachable ({phrase.lower()})"
    last = [line.strip() for line in stderr.splitlines() if line.strip()]
    return f"ssh failed ({last[-1][:200] if last else 'no message'})"


def _where(user: str, host: str, port: int) -> str:
    return f"{user}@{host}:{port}"


def _unreadable(path: Path) -> str | None:
    try:
        with path.open("rb"):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__
