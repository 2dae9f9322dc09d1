"""The local agent identity boundary: GUID derivation (exactly Warp's), a live-instance lease per GUID, handles in KV.

Warp gave every process on one host and project path the same id, so two sessions shared one registry
entry and inbox. Here the derived GUID is only candidate 0: a process holds a lease ``lease.<guid>`` in
the namespace's identity bucket while it runs, and a second live process with the same derivation takes
the next candidate (``sha256(f"{base}#{i}")[:32]``), deterministically. A lease not renewed within the
TTL, or whose process on this host is gone, is stale and taken over — so a restarted process gets its
GUID back at once, even after a crash. Leases hold no project path and no OS user name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from nats_mcp.bus import specs
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import JetStreamError, KeyNotFound, WrongLastSequence, nats_edge
from nats_mcp.bus.jstypes import KeyValue
from nats_mcp.bus.kvcache import Bucket, WatchedBucket
from nats_mcp.bus.layout import Layout
from nats_mcp.config.settings import Settings
from nats_mcp.coord.errors import Conflict, InvalidName
from nats_mcp.core.names import InvalidNameError, validate_guid, validate_name

MAX_CANDIDATES = 64
"""Live instances one derivation may have at once (more is a runaway, reported as a conflict)."""


def _digest32(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def derive_root_guid(hostname: str, project_path: str) -> str:
    """Warp's root id: sha256(hostname + project path), no separator, first 32 hex characters."""
    return _digest32(hostname + project_path)


def derive_subagent_guid(root_guid: str, subagent_type: str) -> str:
    """Warp's sub-agent id: sha256(root id + sub-agent type)[:32]; needs no stored root."""
    return _digest32(root_guid + subagent_type)


def candidate_guid(base: str, index: int) -> str:
    """The ``index``-th GUID a process with derivation ``base`` may hold (0 is ``base`` itself)."""
    return base if index == 0 else _digest32(f"{base}#{index}")


def checked(validate: Callable[[object, str], str], value: object, what: str) -> str:
    """Run a :mod:`nats_mcp.core.names` validator, reporting failure as the domain's ``invalid_name``."""
    try:
        return validate(value, what)
    except InvalidNameError as exc:
        raise InvalidName(str(exc)) from None


# -- where a lease holder runs --------------------------------------------------------------------


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), which tells a reused pid from the original."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command) may hold spaces and parentheses: count fields after its closing one.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def pid_namespace() -> str | None:
    """This process's pid namespace (containers sharing a hostname do not share pids)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` runs and is the same process that recorded ``start`` (not a reuse of its number)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start is None:
        return True
    current = process_start(pid)
    return current is None or current == start


@dataclass(frozen=True)
class Lease:
    """The value of ``lease.<guid>``: which running instance holds the GUID, and since when it last said so."""

    instance: str
    hostname: str
    pid: int
    pid_start: str | None
    pidns: str | None
    renewedAt: float

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Lease | None:
        try:
            data = json.loads(raw or b"")
            return cls(
                instance=str(data["instance"]),
                hostname=str(data["hostname"]),
                pid=int(data["pid"]),
                pid_start=None if data.get("pid_start") is None else str(data["pid_start"]),
                pidns=None if data.get("pidns") is None else str(data["pidns"]),
                renewedAt=float(data["renewedAt"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def lease_is_stale(lease: Lease, *, now: float, ttl_s: float, hostname: str, pidns: str | None) -> bool:
    """Not renewed within the TTL, or held by a process of this host (and pid namespace) that is gone."""
    if now - lease.renewedAt > ttl_s:
        return True
    local = lease.hostname == hostname and lease.pidns == pidns
    return local and not process_alive(lease.pid, lease.pid_start)


# -- the service ----------------------------------------------------------------------------------


HANDLE_SYNC_S = 5.0
"""How long a handle read waits for the first copy of the identity bucket before asking NATS directly."""


def _decode_handle(key: str, raw: bytes) -> str | None:
    """A handle value, or None for every other key of the bucket (leases, locks) and for foreign values."""
    if not key.startswith("handle."):
        return None
    try:
        return validate_name(raw.decode(), "handle")
    except (InvalidNameError, UnicodeDecodeError):
        return None  # not written by us


def _ignore(_key: str, _value: str | None) -> None:
    return None


class IdentityService:
    """The local (stdio) agent's GUID, held by a lease while this process runs; handles of any GUID."""

    def __init__(self, conn: NatsConnection, settings: Settings, layout: Layout) -> None:
        self._conn = conn
        self._bucket = Bucket.declared(conn, specs.identity_bucket(layout))
        # Handles are read on every channel send: a watched copy answers without a round trip.
        self._handles: WatchedBucket[str] = WatchedBucket(self._bucket, _decode_handle, _ignore)
        self._ttl_s = settings.presence.stale_after_s
        self.hostname = socket.gethostname()
        self._pid = os.getpid()
        self._pid_start = process_start(self._pid)
        self._pidns = pid_namespace()
        self.instance = secrets.token_hex(8)
        agent_id, subagent_type = settings.identity.agent_id, settings.identity.subagent_type
        root = agent_id or derive_root_guid(self.hostname, str(settings.project.path))
        self.base_guid = derive_subagent_guid(root, subagent_type) if subagent_type else root
        self.explicit = bool(agent_id) and not subagent_type
        """An explicit id is taken as is or not at all (never a neighbour candidate)."""
        self.guid: str | None = None
        self._revision: int | None = None
        self._lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Create the identity bucket now (``nats-mcp provision``), not on the first handle or lease."""
        await self._bucket.kv()

    @property
    def held(self) -> bool:
        return self._revision is not None

    def _lease(self) -> bytes:
        return Lease(self.instance, self.hostname, self._pid, self._pid_start, self._pidns, time.time()).encode()

    async def acquire(self) -> str:
        """The GUID this process acts as: the first candidate whose lease is free, stale or already ours."""
        async with self._lock:
            if self.guid is not None and self.held:
                return self.guid
            kv = await self._bucket.kv()
            for index in range(1 if self.explicit else MAX_CANDIDATES):
                guid = candidate_guid(self.base_guid, index)
                if await self._take(kv, guid):
                    self.guid = guid
                    return guid
        if self.explicit:
            raise Conflict(
                f"agent id {self.base_guid} (LOOMINAL_AGENT_ID / identity.agent_id) is held by another running "
                "instance: stop that instance, or set a different agent id"
            )
        raise Conflict(
            f"{MAX_CANDIDATES} instances with the same identity are already running on this project: "
            "stop some, or give them LOOMINAL_AGENT_ID / LOOMINAL_SUBAGENT_TYPE"
        )

    async def _take(self, kv: KeyValue, guid: str) -> bool:
        key = Layout.lease_key(guid)
        for _ in range(3):  # a lease released between our create and our get: try again
            try:
                with nats_edge():
                    self._revision = await kv.create(key, self._lease())
                    return True
            except WrongLastSequence:
                pass
            try:
                with nats_edge():
                    entry = await kv.get(key)
            except KeyNotFound:
                continue
            holder = Lease.decode(entry.value)
            if holder is not None and holder.instance != self.instance and not self._stale(holder):
                return False
            try:
                with nats_edge():
                    self._revision = await kv.update(key, self._lease(), last=entry.revision)
                    return True
            except WrongLastSequence:
                return False  # another instance took it over first
        return False

    def _stale(self, lease: Lease) -> bool:
        return lease_is_stale(lease, now=time.time(), ttl_s=self._ttl_s, hostname=self.hostname, pidns=self._pidns)

    async def renew(self) -> None:
        """Keep the lease (every heartbeat); Conflict if another live instance took it while we were silent."""
        async with self._lock:
            if self.guid is None or self._revision is None:
                return
            kv = await self._bucket.kv()
            key = Layout.lease_key(self.guid)
            try:
                with nats_edge():
                    self._revision = await kv.update(key, self._lease(), last=self._revision)
                    return
            except WrongLastSequence:
                pass  # released by hand, taken over, or our previous renewal's reply was lost
            if await self._take(kv, self.guid):
                return
            self._revision = None
            raise Conflict(
                f"another running instance took over agent GUID {self.guid} after this process failed to renew "
                f"its lease for more than {self._ttl_s:g}s; restart this process to get a GUID of its own"
            )

    async def release(self) -> None:
        """Clean shutdown: give the lease back so the next process with this derivation gets the GUID at once."""
        async with self._lock:
            if self.guid is None or self._revision is None:
                return
            kv = await self._bucket.kv()
            revision, self._revision = self._revision, None
            # CAS: if someone took the GUID over meanwhile, their lease is not ours to delete.
            with contextlib.suppress(JetStreamError), nats_edge():
                await kv.delete(Layout.lease_key(self.guid), last=revision)

    async def get_handle(self, guid: str) -> str | None:
        key = Layout.handle_key(checked(validate_guid, guid, "agent GUID"))
        _ = self._conn.jetstream  # NatsUnavailableError while NATS is away, as every other read
        self._handles.start()
        if await self._handles.wait_ready(HANDLE_SYNC_S):
            found = self._handles.get(key)
            if found is not None:
                return found[1]
        # Not in the copy (or it is still loading): ask NATS. A handle another process set a moment ago may not have
        # reached this copy's watch yet, and "set a handle first" must never answer an agent that just set one (a
        # load balancer sends its next call anywhere). An agent has a handle on every call but its first, so this
        # round trip is rare.
        kv = await self._bucket.kv()
        try:
            with nats_edge():
                entry = await kv.get(key)
        except KeyNotFound:
            return None
        handle = _decode_handle(key, entry.value or b"")
        if handle is not None and entry.revision is not None:
            self._handles.apply(key, int(entry.revision), handle)
        return handle

    async def set_handle(self, guid: str, handle: str) -> None:
        key = Layout.handle_key(checked(validate_guid, guid, "agent GUID"))
        value = checked(validate_name, handle, "handle")
        kv = await self._bucket.kv()
        revision = await kv.put(key, value.encode())
        self._handles.apply(key, revision, value)  # write-through: the next read sees it at once

    async def close(self) -> None:
        """Stop the watched copy of the handles."""
        await self._handles.close()
