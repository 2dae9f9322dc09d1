"""The ``local`` mechanism boundary: a target's command template run as a child process of the active coordinator.

Each instance gets its own session (process group), so a coordinator that dies (SIGKILL) does not take its agents
with it: the next leader adopts them through their handle (host, pid namespace, pid, pid start time) and can stop
them by process group — but only on the same host and pid namespace. A leader elsewhere cannot signal them; it
counts them while their registry presence reads online (see docs/fleet.md: run the coordinators of ``local``
targets on one host). The exit code is known only to the process that started the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from nats_mcp.coord.registry.identity import pid_namespace, process_alive, process_start
from nats_mcp.fleet.mechanism import Exit, Handle, MechanismError, StartSpec
from nats_mcp.fleet.targets import LocalSpec

_POLL_S = 0.05


class LocalMechanism:
    """Children of this process for the targets' ``local`` sections (``specs``: target name -> its section)."""

    name = "local"

    def __init__(self, specs: dict[str, LocalSpec], base_env: dict[str, str] | None = None) -> None:
        self.specs = specs
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.host = socket.gethostname()
        self.pidns = pid_namespace()
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    async def start(self, spec: StartSpec) -> Handle:
        local = self.specs[spec.target]
        argv = spec.command(local.command)
        cwd = str(local.cwd) if local.cwd is not None else None
        try:
            proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the child is watched by poll()
                argv,
                cwd=cwd,
                env={**self.base_env, **spec.env},
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives this coordinator; stopped by process group
            )
        except OSError as exc:
            raise MechanismError(f"cannot run {argv[0]!r}: {exc.strerror}") from None
        self._children[proc.pid] = proc
        ref = {
            "target": spec.target,
            "host": self.host,
            "pidns": self.pidns,
            "pid": proc.pid,
            "pidStart": process_start(proc.pid),
        }
        return Handle(self.name, ref)

    def find(self, target: str, instance: str) -> Handle | None:
        """The handle of ``instance`` if its command runs on this host though none was recorded: the coordinator
        that started it died between the start and recording its pid. Found by the marker its environment carries
        (``NATS_MCP_FLEET_INSTANCE``); the session leader only (what it starts inherits the marker, not the session
        leadership). Linux ``/proc``; None elsewhere or when it is not running."""
        marker = f"NATS_MCP_FLEET_INSTANCE={instance}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError):
                pid = int(entry.name)
                if marker in (entry / "environ").read_bytes().split(b"\0") and os.getsid(pid) == pid:
                    if _zombie(pid):
                        return None
                    ref = {"target": target, "host": self.host, "pidns": self.pidns, "pid": pid}
                    return Handle(self.name, {**ref, "pidStart": process_start(pid)})
        return None

    def _ours(self, handle: Handle) -> bool:
        """Whether the handle's process is one this host and pid namespace can see."""
        return bool(handle.ref.get("host") == self.host and handle.ref.get("pidns") == self.pidns)

    async def poll(self, handle: Handle) -> Exit | bool | None:
        pid = int(handle.ref.get("pid", 0))
        child = self._children.get(pid)
        if child is not None:
            code = child.poll()
            if code is None:
                return True
            del self._children[pid]
            return Exit(code)
        if not self._ours(handle):
            return None
        start = handle.ref.get("pidStart")
        alive = process_alive(pid, str(start) if start is not None else None) and not _zombie(pid)
        return True if alive else Exit(None)

    async def stop(self, handle: Handle) -> None:
        pid = int(handle.ref.get("pid", 0))
        local = self.specs.get(str(handle.ref.get("target")))
        timeout_s = local.stop_timeout_s if local is not None else 10.0
        if pid <= 0 or not self._ours(handle) or await self.poll(handle) is not True:
            return
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.poll(handle) is not True:
                return
            await asyncio.sleep(_POLL_S)  # waiting on a process we do not own: no event to wait on
        _signal_group(pid, signal.SIGKILL)
        child = self._children.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(1.0)

    def check_cwd(self) -> list[str]:
        """Targets whose working directory does not exist (a start would fail)."""
        return [name for name, s in self.specs.items() if s.cwd is not None and not Path(s.cwd).is_dir()]


def _zombie(pid: int) -> bool:
    """An ended process nobody reaped yet (its parent, our dead predecessor, is gone; a container's pid 1 may never
    reap it): it still answers kill(pid, 0) but runs no more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
