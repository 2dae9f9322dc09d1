"""The KV read-model boundary: a bucket opened over the live connection, and a local copy of it kept current by a watch.

Reads served from the copy cost no NATS round trip (discover must not do a KV get per agent). The
copy is filled by a KV watch, written through by this process's own writes (so a write is visible to
the next read at once), never moves an entry back to an older revision, and is rebuilt from a fresh
watch whenever the connection was re-established (a restarted server loses the watch's consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import nats.errors
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import NatsUnavailableError, nats_edge
from nats_mcp.bus.setup import ensure_kv
from nats_mcp.bus.specs import BucketSpec
from nats_mcp.core.aiotasks import cancel_requested, stop_task

log = logging.getLogger("nats_mcp.bus.kvcache")

T = TypeVar("T")
Decode = Callable[[str, bytes], T | None]
"""Key and raw value -> the value, or None for a value that is not ours (skipped, logged by the decoder)."""
OnChange = Callable[[str, T | None], None]
"""Called with the new value of a key, or None when it was deleted."""

_SYNC_STEP_TIMEOUT_S = 10.0


class Bucket:
    """One KV bucket over the connection's current JetStream context, created on first use, reopened after a new
    connection. Every access goes through ``conn.jetstream``, so it raises NatsUnavailableError while NATS is away.
    """

    def __init__(
        self, conn: NatsConnection, name: str, *, description: str = "", ttl_s: float | None = None, create: bool = True
    ) -> None:
        self.conn = conn
        self._create = create
        """False for a read-only user of the bucket (the dashboard): a missing bucket is ResourceNotFound."""
        self.name = name
        self._description = description
        self._ttl_s = ttl_s
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def declared(cls, conn: NatsConnection, spec: BucketSpec, *, create: bool = True) -> Bucket:
        """The bucket a :mod:`nats_mcp.bus.specs` declaration describes."""
        return cls(conn, spec.name, description=spec.description, ttl_s=spec.ttl_s, create=create)

    async def kv(self) -> KeyValue:
        js = self.conn.jetstream
        if self._kv is not None and self._js is js:
            return self._kv
        async with self._lock:
            if self._kv is None or self._js is not js:
                if not self._create:
                    with nats_edge():
                        self._kv = await js.key_value(self.name)
                    self._js = js
                    return self._kv
                self._kv = await ensure_kv(
                    js, self.name, ttl=self._ttl_s, description=self._description, replicas=self.conn.replicas
                )
                self._js = js
            return self._kv


class WatchedBucket(Generic[T]):
    """A local copy of one bucket: ``start()`` it, read with :meth:`get`/:meth:`items`, write through :meth:`apply`."""

    def __init__(self, bucket: Bucket, decode: Decode[T], on_change: OnChange[T], *, check_s: float = 1.0) -> None:
        self.bucket = bucket
        self._decode = decode
        self._on_change = on_change
        self._check_s = check_s
        self._entries: dict[str, tuple[int, T | None]] = {}
        self._recent: dict[str, tuple[int, T | None]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.ready = asyncio.Event()
        """Set once the first full copy is loaded (stays set while a resync runs)."""
        self._live_on: tuple[object, int] | None = None
        self._live = asyncio.Event()

    @property
    def live(self) -> bool:
        """The copy is following the bucket now: loaded over the current connection and its watch running. False from
        the moment the connection drops or is replaced until a new watch has loaded a fresh copy (what readers that
        must never act on stale news — a revoked key — check; :attr:`ready` stays set meanwhile)."""
        return self._live_on is not None and self._live_on == self._generation()

    async def wait_live(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the copy to be :attr:`live`."""
        if self.live:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._live.wait(), timeout)
        return self.live

    # -- reads and writes ------------------------------------------------------------------------

    def get(self, key: str) -> tuple[int, T] | None:
        """(revision, value) of a live key."""
        found = self._entries.get(key)
        if found is None or found[1] is None:
            return None
        return found[0], found[1]

    def items(self) -> list[tuple[str, int, T]]:
        return [(key, rev, value) for key, (rev, value) in self._entries.items() if value is not None]

    def apply(self, key: str, revision: int, value: T | None) -> None:
        """Record a write (``None`` = deleted) at ``revision``; older news than what is held is ignored."""
        if self._recent is not None:  # a resync is loading: replay this write on top of its snapshot
            held = self._recent.get(key)
            if held is None or held[0] < revision:
                self._recent[key] = (revision, value)
        current = self._entries.get(key)
        if current is not None and current[0] >= revision:
            return
        self._entries[key] = (revision, value)  # a deletion is kept as a tombstone revision
        if value is not None or (current is not None and current[1] is not None):
            self._on_change(key, value)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"watch-{self.bucket.name}")

    async def wait_ready(self, timeout: float) -> bool:
        if self.ready.is_set():
            return True  # the common case, without a timer
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        await stop_task(task)

    # -- the watch -------------------------------------------------------------------------------

    def _generation(self) -> tuple[object, int]:
        conn = self.bucket.conn
        return (conn.client if conn.connected else None, conn.reconnects)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self._watch_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except NatsUnavailableError:
                await self.bucket.conn.wait_connected(5.0)
                continue
            except Exception as exc:
                if cancel_requested():  # the close's cancel, which nats-py turned into an error on the closing link
                    raise asyncio.CancelledError from exc
                failures += 1
                log.warning("watch of KV bucket %s failed (%s); retrying", self.bucket.name, exc)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))

    async def _watch_once(self) -> None:
        """Load a full copy, then follow updates until the connection changes underneath (then return to resync)."""
        kv = await self.bucket.kv()
        generation = self._generation()
        self._recent = {}  # writes finished before the watch starts are in its snapshot; later ones are kept here
        try:
            watcher = await kv.watchall()
        except BaseException:
            self._recent = None
            raise
        try:
            await self._load(watcher)
            self._live_on = generation
            self._live.set()
            while self._generation() == generation and not self._stopping:
                try:
                    entry = await watcher.updates(timeout=self._check_s)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    continue
                if entry is not None:
                    self.apply(*self._unpack(entry))
        finally:
            self._live_on = None
            self._live.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watcher.stop(), 2.0)  # type: ignore[no-untyped-call]

    async def _load(self, watcher: Any) -> None:
        snapshot: dict[str, tuple[int, T | None]] = {}
        try:
            while (entry := await watcher.updates(timeout=_SYNC_STEP_TIMEOUT_S)) is not None:
                key, revision, value = self._unpack(entry)
                snapshot[key] = (revision, value)
            for key, (revision, value) in (self._recent or {}).items():
                if key not in snapshot or snapshot[key][0] < revision:
                    snapshot[key] = (revision, value)
        finally:
            self._recent = None
        old, self._entries = self._entries, snapshot
        for key in old.keys() | snapshot.keys():
            before, after = old.get(key, (0, None)), snapshot.get(key, (0, None))
            if before[0] != after[0] and (after[1] is not None or before[1] is not None):
                self._on_change(key, after[1])
        self.ready.set()

    def _unpack(self, entry: KeyValue.Entry) -> tuple[str, int, T | None]:
        revision = int(entry.revision or 0)
        if entry.operation in (KV_DEL, KV_PURGE) or entry.value is None:
            return entry.key, revision, None
        return entry.key, revision, self._decode(entry.key, entry.value)
