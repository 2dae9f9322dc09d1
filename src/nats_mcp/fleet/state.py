"""The fleet state boundary: what the active coordinator records in its KV bucket so that any successor (and
`nats-mcp fleet status`) knows it — the leader lease, every instance with its handle, per-target backoff and
idleness, the recent decisions.

Written only by the leader (the lease decides who that is), read by anyone. An instance is recorded *before* its
mechanism starts it (state ``starting``, no handle yet) and again with its handle once started, so a leader that
dies between the two leaves a record its successor counts until the start-up grace runs out: a failover never
double-starts into more than ``max``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import nats.js.errors

from nats_mcp.bus import specs
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.kvlock import KvLock
from nats_mcp.bus.layout import Layout
from nats_mcp.fleet.mechanism import Handle

KEEP_DECISIONS = 100
LEASE_NAME = "fleet"
InstanceState = Literal["starting", "running"]


@dataclass
class InstanceRecord:
    """One instance the fleet started (or is starting), as stored at ``inst.<target>.<id>``."""

    target: str
    id: str
    agent_guid: str
    agent_name: str
    started_at: float
    state: InstanceState = "starting"
    handle: Handle | None = None
    leader: str = ""
    """Which coordinator started it (its lease owner id)."""

    @property
    def key(self) -> str:
        return f"inst.{self.target}.{self.id}"

    def encode(self) -> bytes:
        data = asdict(self)
        data["handle"] = self.handle.to_json() if self.handle is not None else None
        return json.dumps(data).encode()

    @classmethod
    def decode(cls, raw: bytes) -> InstanceRecord:
        data = json.loads(raw)
        handle = Handle.from_json(data["handle"]) if data.get("handle") else None
        return cls(**{**data, "handle": handle})


@dataclass
class TargetState:
    """What a successor must not forget about a target: crashes in a row (for the backoff) and since when idle."""

    failures: int = 0
    backoff_until: float = 0.0
    idle_since: float | None = None
    last_exit: str | None = None


@dataclass
class DecisionRecord:
    at: float
    target: str
    action: str
    reason: str
    instance: str | None = None
    ok: bool = True
    leader: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class FleetStore:
    """The fleet's KV bucket of one namespace."""

    def __init__(self, conn: NatsConnection, layout: Layout, lease_ttl_s: float, *, create: bool = True) -> None:
        """``create=False``: a reader (status, the dashboard) that must not make the bucket (ResourceNotFound)."""
        self.bucket = Bucket.declared(conn, specs.fleet_bucket(layout), create=create)
        self.lease = KvLock(self.bucket, LEASE_NAME, lease_ttl_s)

    async def _entries(self, prefix: str) -> dict[str, bytes]:
        kv = await self.bucket.kv()
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return {}
        found: dict[str, bytes] = {}
        for key in keys:
            if key.startswith(prefix):
                try:
                    entry = await kv.get(key)
                except nats.js.errors.KeyNotFoundError:
                    continue  # deleted meanwhile
                if entry.value:
                    found[key] = entry.value
        return found

    async def instances(self) -> list[InstanceRecord]:
        out: list[InstanceRecord] = []
        for raw in (await self._entries("inst.")).values():
            try:
                out.append(InstanceRecord.decode(raw))
            except (ValueError, KeyError, TypeError):
                continue  # not ours to read; never acted on
        return sorted(out, key=lambda r: r.started_at)

    async def put_instance(self, record: InstanceRecord) -> None:
        await (await self.bucket.kv()).put(record.key, record.encode())

    async def delete_instance(self, record: InstanceRecord) -> None:
        await (await self.bucket.kv()).delete(record.key)

    async def target_state(self, name: str) -> TargetState:
        kv = await self.bucket.kv()
        try:
            entry = await kv.get(f"target.{name}")
        except nats.js.errors.KeyNotFoundError:
            return TargetState()
        try:
            return TargetState(**json.loads(entry.value or b"{}"))
        except (ValueError, TypeError):
            return TargetState()

    async def put_target_state(self, name: str, st: TargetState) -> None:
        await (await self.bucket.kv()).put(f"target.{name}", json.dumps(asdict(st)).encode())

    async def decisions(self) -> list[DecisionRecord]:
        kv = await self.bucket.kv()
        try:
            entry = await kv.get("decisions")
        except nats.js.errors.KeyNotFoundError:
            return []
        try:
            return [DecisionRecord(**d) for d in json.loads(entry.value or b"[]")]
        except (ValueError, TypeError):
            return []

    async def add_decisions(self, new: list[DecisionRecord]) -> None:
        if not new:
            return
        kept = ([*await self.decisions(), *new])[-KEEP_DECISIONS:]
        await (await self.bucket.kv()).put("decisions", json.dumps([asdict(d) for d in kept]).encode())

    async def put_info(self, key: Literal["targets", "leader"], data: Any) -> None:
        await (await self.bucket.kv()).put(key, json.dumps(data).encode())

    async def info(self, key: Literal["targets", "leader"]) -> Any:
        kv = await self.bucket.kv()
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return json.loads(entry.value or b"null")
