"""Benchmark boundary of a server process as /proc sees it: its children, resident memory and CPU time (scale.py)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from http_tools import cpu_s as process_cpu_s


def _stat_fields(pid_dir: Path) -> list[str] | None:
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces


def child_pids(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc/*/stat)."""
    found = set()
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit():
            fields = _stat_fields(pid_dir)
            if fields is not None and int(fields[1]) == pid:
                found.add(int(pid_dir.name))
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += sorted(child_pids(current))
    return tree


def rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` and its descendants, MiB."""
    total_kib = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants, all threads (``http_tools.cpu_s`` per process)."""
    return sum(process_cpu_s(member) for member in process_tree(pid))


@dataclass
class Memory:
    """RSS figures in the order taken: (server, state, MiB); the first figure of each server is its baseline."""

    figures: list[tuple[str, str, float]] = field(default_factory=list)

    def add(self, server: str, state: str, pid: int) -> float:
        mib = rss_mib(pid)
        self.figures.append((server, state, mib))
        print(f"  RSS {server}, {state}: {mib:.1f} MiB", flush=True)
        return mib
