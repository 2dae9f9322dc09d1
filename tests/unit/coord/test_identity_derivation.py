"""Agent GUID derivation (exactly Warp's), candidate GUIDs, and the lease staleness rules, without NATS."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.coord.registry.identity import (
    MAX_CANDIDATES,
    IdentityService,
    Lease,
    candidate_guid,
    derive_root_guid,
    derive_subagent_guid,
    lease_is_stale,
    pid_namespace,
    process_alive,
    process_start,
)
from tests.support.env import settings_for

GUID = re.compile(r"^[0-9a-f]{32}$")


def test_root_guid_is_warps_derivation() -> None:
    expected = hashlib.sha256(b"myhost" + b"/home/me/proj").hexdigest()[:32]
    assert expected == "5b3208c7a6bb39f32f16a83156df9888"  # pinned: the vector must not drift with the code
    assert derive_root_guid("myhost", "/home/me/proj") == expected


def test_subagent_guid_derives_from_the_root() -> None:
    root = derive_root_guid("myhost", "/home/me/proj")
    expected = hashlib.sha256((root + "reviewer").encode()).hexdigest()[:32]
    assert expected == "ce9c3191020c786febc124d213966032"
    assert derive_subagent_guid(root, "reviewer") == expected


def test_candidates_are_deterministic_distinct_guids() -> None:
    base = derive_root_guid("myhost", "/home/me/proj")
    candidates = [candidate_guid(base, i) for i in range(MAX_CANDIDATES)]
    assert candidates[0] == base
    assert candidates[1] == hashlib.sha256(f"{base}#1".encode()).hexdigest()[:32]
    assert len(set(candidates)) == MAX_CANDIDATES
    assert all(GUID.fullmatch(c) for c in candidates)
    assert candidates == [candidate_guid(base, i) for i in range(MAX_CANDIDATES)]


def _service(tmp_path: Path, **env: str) -> IdentityService:
    settings = settings_for(tmp_path, NATS_URL="nats://127.0.0.1:1", **env)
    return IdentityService(NatsConnection(settings), settings, Layout("alpha"))  # not started: no I/O


def test_service_derives_from_hostname_and_project_path(tmp_path: Path) -> None:
    service = _service(tmp_path)
    assert service.base_guid == derive_root_guid(socket.gethostname(), str(tmp_path.resolve()))
    assert not service.explicit


def test_service_subagent_needs_no_stored_root(tmp_path: Path) -> None:
    service = _service(tmp_path, LOOMINAL_SUBAGENT_TYPE="reviewer")
    root = derive_root_guid(socket.gethostname(), str(tmp_path.resolve()))
    assert service.base_guid == derive_subagent_guid(root, "reviewer")
    assert not service.explicit  # two sub-agents of one type get neighbouring GUIDs, not a collision


def test_service_explicit_agent_id(tmp_path: Path) -> None:
    service = _service(tmp_path, LOOMINAL_AGENT_ID="ab" * 16)
    assert service.base_guid == "ab" * 16 and service.explicit
    sub = _service(tmp_path, LOOMINAL_AGENT_ID="ab" * 16, LOOMINAL_SUBAGENT_TYPE="reviewer")
    assert sub.base_guid == derive_subagent_guid("ab" * 16, "reviewer") and not sub.explicit


def _lease(**changes: object) -> Lease:
    values: dict[str, object] = {
        "instance": "i1",
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": process_start(os.getpid()),
        "pidns": pid_namespace(),
        "renewedAt": time.time(),
    }
    values.update(changes)
    return Lease(**values)  # type: ignore[arg-type]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _stale(lease: Lease, ttl: float = 10.0, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    return lease_is_stale(lease, now=now, ttl_s=ttl, hostname=socket.gethostname(), pidns=pid_namespace())


def test_lease_of_a_live_local_process_is_not_stale() -> None:
    assert not _stale(_lease())


def test_lease_not_renewed_within_the_ttl_is_stale() -> None:
    now = time.time()  # one moment for both: a pause between two clock reads cannot move the answer
    assert _stale(_lease(renewedAt=now - 11), now=now)
    assert not _stale(_lease(renewedAt=now - 9), now=now)


def test_lease_of_a_dead_local_process_is_stale_at_once() -> None:
    assert _stale(_lease(pid=_dead_pid(), pid_start=None))


@pytest.mark.skipif(process_start(os.getpid()) is None, reason="needs /proc start times")
def test_lease_of_a_reused_pid_is_stale() -> None:
    assert process_alive(os.getpid(), process_start(os.getpid()))
    assert _stale(_lease(pid_start="1"))  # our pid, but another process's start time


def test_pid_of_another_host_or_pid_namespace_is_not_judged_locally() -> None:
    dead = _dead_pid()
    assert not _stale(_lease(pid=dead, hostname="elsewhere"))
    assert not _stale(_lease(pid=dead, pidns="pid:[1]"))


def test_lease_value_round_trips_and_holds_no_path_or_user() -> None:
    lease = _lease()
    raw = lease.encode()
    assert Lease.decode(raw) == lease
    assert set(json.loads(raw)) == {"instance", "hostname", "pid", "pid_start", "pidns", "renewedAt"}
    assert Lease.decode(b"not json") is None
    assert Lease.decode(b'{"instance": "x"}') is None
