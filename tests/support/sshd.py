"""A real OpenSSH server on loopback for the ssh mechanism's tests: its own config, host key and authorized_keys.

``/usr/sbin/sshd -D -e -f <config>`` on 127.0.0.1 and a free port (sshd writes no ports file: the port is found by
binding port 0, and if sshd loses the race for it, another is tried). Installed by ``scripts/sshd`` (Debian's
``openssh-server``); when it is missing the fixture fails with that reason, never skips.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.natsserver import wait_for_sync

SSHD = Path("/usr/sbin/sshd")


@dataclass
class Sshd:
    port: int
    user: str
    key: Path
    """The client key sshd accepts."""
    other_key: Path
    """A client key sshd does not accept."""
    known_hosts: Path
    """The true host key for 127.0.0.1 on this port."""
    wrong_known_hosts: Path
    """Another key recorded for the same host and port (a changed or spoofed host)."""
    log: Path


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _try_start(tmp: Path, attempt: int, authorized: Path) -> tuple[subprocess.Popen[bytes], int, Path] | None:
    """sshd on a port found free just before; None if another process took the port meanwhile."""
    port = _free_port()
    config = tmp / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {tmp / 'host_ed25519'}",
                f"AuthorizedKeysFile {authorized}",
                "PidFile none",
                "StrictModes no",  # the test's tmp directory is not sshd's to judge
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "LogLevel INFO",
                # The cheapest modern key exchange: the post-quantum default costs every ssh run of the tests
                # (each start, poll and stop is one) CPU the shared machine does not have; production is untouched.
                "KexAlgorithms curve25519-sha256",
                "",
            ]
        )
    )
    log = tmp / f"sshd{attempt}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)], stdout=out, stderr=out, stdin=subprocess.DEVNULL
        )
    ready = f"Server listening on 127.0.0.1 port {port}"
    wait_for_sync(
        lambda: ready in log.read_text(errors="replace") or proc.poll() is not None,
        15,
        message=lambda: f"sshd did not start: {log.read_text(errors='replace')}",
    )
    if proc.poll() is None:
        return proc, port, log
    if "Address already in use" not in log.read_text(errors="replace"):
        raise AssertionError(f"sshd did not start: {log.read_text(errors='replace')}")
    return None


@contextlib.contextmanager
def sshd(tmp: Path) -> Iterator[Sshd]:
    """A running sshd for the current user (root here and on CI), stopped on exit."""
    if not SSHD.exists():
        raise AssertionError("sshd is not installed: run scripts/sshd (Debian's openssh-server)")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation directory (a tmpfs after boot)
    tmp.mkdir(parents=True, exist_ok=True)
    host_pub = _keygen(tmp / "host_ed25519")
    client_pub = _keygen(tmp / "client_ed25519")
    _keygen(tmp / "other_ed25519")
    authorized = tmp / "authorized_keys"
    authorized.write_text(client_pub + "\n")
    for attempt in range(5):
        started = _try_start(tmp, attempt, authorized)
        if started is not None:
            proc, port, log = started
            break
    else:
        raise AssertionError("sshd lost the race for a free port five times")
    known = tmp / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    wrong = tmp / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{port} {client_pub}\n")
    try:
        yield Sshd(port, getpass.getuser(), tmp / "client_ed25519", tmp / "other_ed25519", known, wrong, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cmdlines() -> list[bytes]:
    """Every process's argv on this machine (the 'remote' side is this machine: the sshd is on loopback)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found.append((entry / "cmdline").read_bytes())
    return found


def pid_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat[stat.rindex(")") + 2 :].startswith("Z")
