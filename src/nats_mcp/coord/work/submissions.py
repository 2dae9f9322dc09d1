"""The work-submission boundary: one KV record per broadcast item (who offered it, what it waits for), changed by CAS.

An item's state record (:mod:`nats_mcp.coord.work.store`) only exists once it is claimed; the submission record
exists from the broadcast on, so ``warp_work_get`` can answer for a queued item (and check who may see it) and a
cancel can find its queue message. It also holds a blocked item (``dependsOn``) until it is released: the item
itself, the ``Nats-Msg-Id`` its release publishes with, and the sequence it got. Every transition of a blocked
item (released, dead-lettered, cancelled) is a write conditioned on the revision read, so of two processes
releasing the same item one wins. Keys live in the work-state bucket beside the state records:

* ``sub.<id>``: the submission;
* ``blocked.<id>``: present while the item is blocked or half way out of it (the sweeper's list; removed by a
  purge of its subject, so a listing of ``blocked.*`` names only live ones);
* ``rdep.<dependency>.<id>``: the reverse index, one key per edge (no read-modify-write of a shared list).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from nats_mcp.bus.errors import KeyNotFound, WrongLastSequence, nats_edge
from nats_mcp.bus.failover import riding_out
from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.streamops import get_next
from nats_mcp.core.names import validate_uuid

SubState = Literal["pending", "blocked", "dead", "cancelled"]
API_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Submission:
    """What was broadcast and where it stands before (and besides) any claim."""

    state: SubState
    offered_by: str
    capability: str
    task_id: str
    depends_on: list[str] = field(default_factory=list)
    item: dict[str, Any] | None = None
    """The item a blocked one publishes when released (kept while blocked, and after, for a DLQ retry)."""
    msg_id: str | None = None
    """``Nats-Msg-Id`` of the release: the same for every process that releases this generation of the item."""
    seq: int = 0
    """Work-stream sequence of the item's message once published (0: not yet, or not known)."""
    dependency: str | None = None
    """state ``dead``: the dependency that failed."""
    boundary: str | None = None
    """The item's work boundary (None: unbounded); who may see the item depends on it."""
    at: float = field(default_factory=time.time)

    def encode(self) -> bytes:
        # The fields as they are (json.dumps copies nothing): asdict's deep copy was a third of a broadcast's encoding.
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Submission | None:
        try:
            body = json.loads(raw or b"")
            return cls(**{k: body[k] for k in cls.__dataclass_fields__ if k in body})
        except (ValueError, TypeError):
            return None


def sub_key(item_id: str) -> str:
    return f"sub.{validate_uuid(item_id, 'workItemId')}"


def blocked_key(item_id: str) -> str:
    return f"blocked.{validate_uuid(item_id, 'workItemId')}"


def rdep_key(dependency: str, item_id: str) -> str:
    return f"rdep.{validate_uuid(dependency, 'dependsOn')}.{validate_uuid(item_id, 'workItemId')}"


class Submissions:
    """Submission records, the blocked list and the reverse dependency index in the work-state bucket."""

    def __init__(self, bucket: Bucket, api: str) -> None:
        self.bucket = bucket
        self._api = api

    @property
    def stream(self) -> str:
        return f"KV_{self.bucket.name}"

    def subject(self, key: str) -> str:
        """The KV subject of ``key`` (a put on it is also a plain NATS message: watchers subscribe to it)."""
        return f"$KV.{self.bucket.name}.{key}"

    async def read(self, item_id: str) -> tuple[Submission | None, int]:
        kv = await self.bucket.kv()
        try:
            with nats_edge():
                entry = await kv.get(sub_key(item_id))
        except KeyNotFound:
            return None, 0
        return Submission.decode(entry.value), int(entry.revision or 0)

    async def write(self, item_id: str, sub: Submission, revision: int) -> int | None:
        """Store ``sub`` if the key is still at ``revision`` (0: absent); None if it moved meanwhile."""
        kv = await self.bucket.kv()
        key = sub_key(item_id)

        async def attempt() -> int:
            with nats_edge():
                if revision == 0:
                    return int(await kv.create(key, sub.encode()))
                return int(await kv.update(key, sub.encode(), last=revision))

        try:
            return await riding_out(attempt)
        except WrongLastSequence:
            return None

    async def put(self, key: str, value: bytes = b"") -> None:
        kv = await self.bucket.kv()
        with nats_edge():
            await kv.put(key, value)

    async def mark_age(self, item_id: str) -> float:
        """Seconds since ``blocked.<id>`` was written (0 when it is gone or unreadable)."""
        kv = await self.bucket.kv()
        try:
            with nats_edge():
                entry = await kv.get(blocked_key(item_id))
            return max(time.time() - float((entry.value or b"").decode()), 0.0)
        except (KeyNotFound, ValueError):
            return 0.0

    async def unblock(self, item_id: str) -> None:
        """Drop ``blocked.<id>`` without a marker (a purge of its subject), so listings stop naming it."""
        js = self.bucket.conn.jetstream
        with nats_edge():
            await js.purge_stream(self.stream, subject=self.subject(blocked_key(item_id)))

    async def keys(self, pattern: str) -> list[str]:
        """Keys matching ``pattern`` (one request to the stream; only keys with a stored value or a marker)."""
        prefix = self.subject("")
        with nats_edge():
            info = await self.bucket.conn.jetstream.stream_info(self.stream, subjects_filter=self.subject(pattern))
        return [s.removeprefix(prefix) for s in (info.state.subjects or {})]

    async def dependents(self, dependency: str) -> list[str]:
        """Items that named ``dependency`` in their dependsOn. One direct read when there are none (the usual case
        on a completion), a listing otherwise."""
        pattern = f"rdep.{validate_uuid(dependency, 'dependsOn')}.*"
        first = await get_next(
            self.bucket.conn.client, self.stream, 1, self.subject(pattern), prefix=self._api, timeout=API_TIMEOUT_S
        )
        if first is None:
            return []
        return sorted({key.rsplit(".", 1)[1] for key in await self.keys(pattern)})

    async def blocked(self) -> list[str]:
        """Items with a ``blocked.<id>`` key: blocked, or left half way out of it by a process that died."""
        return [key.removeprefix("blocked.") for key in await self.keys("blocked.*")]
