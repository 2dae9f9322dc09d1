"""The registry storage boundary: entries in KV (compare-and-set), their directory copies, the copies reads come from.

Entries live in the namespace's registry bucket (key = GUID). Entries with scope public or personal are
copied by their writer into the shared directory bucket (``<namespace>.<guid>``) so other namespaces
can see them; the copy is refreshed with every write (heartbeats included) and removed when the scope
stops being shared. Writes to one agent are serialized inside this process, use CAS against other
processes, and are written through to the local copies so this process reads its own writes at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

from pydantic import ValidationError

from nats_mcp.bus import specs
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import JetStreamError, KeyNotFound, WrongLastSequence, nats_edge
from nats_mcp.bus.jstypes import KeyValue
from nats_mcp.bus.kvcache import Bucket, WatchedBucket
from nats_mcp.bus.layout import Layout, parse_directory_key
from nats_mcp.coord.errors import Conflict, CoordError, NatsUnavailable
from nats_mcp.coord.models import AgentRecord
from nats_mcp.coord.registry.index import AgentIndex
from nats_mcp.coord.registry.visibility import MIRRORED_SCOPES, parse_time
from nats_mcp.core.names import InvalidNameError, validate_guid, validate_name

log = logging.getLogger("nats_mcp.coord.registry.service")

_CAS_ATTEMPTS = 8

Change = Callable[[AgentRecord | None], AgentRecord | None]
"""Old stored record (None: not registered) -> the record to store, or None to write nothing."""


def decode_record(key: str, raw: bytes) -> AgentRecord | None:
    """A stored entry, or None (logged) for anything this project did not write."""
    try:
        record = AgentRecord.model_validate_json(raw)
        validate_guid(record.guid)
        validate_name(record.namespace, "namespace")
        parse_time(record.lastHeartbeat)
        parse_time(record.registeredAt)
    except (ValidationError, InvalidNameError, ValueError) as exc:
        log.warning("ignoring unreadable registry entry %s: %s", key, str(exc).splitlines()[0])
        return None
    return record


class RegistryStore:
    """The entries one namespace can see: its own (authoritative) and other namespaces' shared copies."""

    def __init__(self, conn: NatsConnection, layout: Layout) -> None:
        self.namespace = layout.namespace
        self.conn = conn
        self._layout = layout
        self._registry = Bucket.declared(conn, specs.registry_bucket(layout))
        self._directory = Bucket.declared(conn, specs.directory_bucket())
        self.index = AgentIndex()
        self._own = WatchedBucket(self._registry, self._decode_own, self._own_changed)
        self._shared = WatchedBucket(self._directory, self._decode_shared, self._shared_changed)
        self._writing: dict[str, asyncio.Lock] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._own.start()
        self._shared.start()

    async def wait_loaded(self, timeout: float) -> bool:
        """Whether both local copies are loaded (waiting up to ``timeout`` for them)."""
        if self._own.ready.is_set() and self._shared.ready.is_set():
            return True
        loaded = await asyncio.gather(self._own.wait_ready(timeout), self._shared.wait_ready(timeout))
        return all(loaded)

    async def ready(self, timeout: float) -> None:
        """For reads: NatsUnavailableError while NATS is away (rather than an old copy), NatsUnavailable if the
        copies are still loading."""
        _ = self.conn.jetstream
        if not await self.wait_loaded(timeout):
            raise NatsUnavailable("the registry is still loading from NATS; retry in a moment")

    async def close(self) -> None:
        await self._own.close()
        await self._shared.close()

    # -- local copies ----------------------------------------------------------------------------

    def _decode_own(self, key: str, raw: bytes) -> AgentRecord | None:
        record = decode_record(key, raw)
        if record is not None and (record.guid != key or record.namespace != self.namespace):
            log.warning("ignoring registry entry %s: it names another agent or namespace", key)
            return None
        return record

    def _decode_shared(self, key: str, raw: bytes) -> AgentRecord | None:
        record = decode_record(key, raw)
        try:
            where = parse_directory_key(key)
        except InvalidNameError:
            return None
        if record is not None and (where != (record.namespace, record.guid) or record.scope not in MIRRORED_SCOPES):
            log.warning("ignoring directory entry %s: it does not match its key or is not shared", key)
            return None
        return record

    def _own_changed(self, key: str, record: AgentRecord | None) -> None:
        if record is None:
            self.index.remove(self.namespace, key)
        else:
            self.index.upsert(record)

    def _shared_changed(self, key: str, record: AgentRecord | None) -> None:
        namespace, _, guid = key.partition(".")
        if namespace == self.namespace:
            return  # our own entries come from the registry bucket, which is authoritative
        if record is None:
            self.index.remove(namespace, guid)
        else:
            self.index.upsert(record)

    def own_items(self) -> Iterator[tuple[str, int, AgentRecord]]:
        return iter(self._own.items())

    def shared_items(self) -> Iterator[tuple[str, int, AgentRecord]]:
        """Directory copies of other namespaces' entries."""
        return (item for item in self._shared.items() if item[2].namespace != self.namespace)

    def copied(self, guid: str) -> AgentRecord | None:
        """The entry as the local copy holds it while that copy follows the bucket (None: not there, or not live)."""
        if not self._own.live:
            return None
        found = self._own.get(guid)
        return found[1] if found is not None else None

    # -- reading and writing KV ------------------------------------------------------------------

    async def read(self, guid: str) -> tuple[int, AgentRecord | None]:
        """(revision, record) straight from KV, authoritative; revision 0 when there is no entry."""
        kv = await self._registry.kv()
        try:
            with nats_edge():
                entry = await kv.get(guid)
        except KeyNotFound:
            return 0, None
        revision = int(entry.revision or 0)
        record = self._decode_own(guid, entry.value or b"")
        self._own.apply(guid, revision, record)
        return revision, record

    async def mutate(self, guid: str, change: Change) -> tuple[AgentRecord | None, AgentRecord | None]:
        """Apply ``change`` to the stored entry by CAS; returns (old, new), new None when nothing was written.

        The local copy is tried first (one round trip when it is current); a conflict, a miss or a refusal
        based on the copy is checked against KV before it counts.
        """
        async with self._writing.setdefault(guid, asyncio.Lock()):
            kv = await self._registry.kv()
            current: tuple[int, AgentRecord | None] | None = self._own.get(guid)
            fresh = False
            for _ in range(_CAS_ATTEMPTS):
                if current is None:
                    current, fresh = await self.read(guid), True
                revision, old = current
                try:
                    new = change(old)
                except CoordError:
                    if fresh:
                        raise
                    current = None
                    continue
                if new is None:
                    if fresh:
                        return old, None
                    current = None
                    continue
                written = await self._write(kv, guid, revision, new)
                if written is None:
                    current = None  # another process wrote first: start again from its version
                    continue
                self._own.apply(guid, written, new)
                await self._mirror(old, new)
                return old, new
        raise Conflict("the registry entry kept changing under concurrent writers; retry")

    @staticmethod
    async def _write(kv: KeyValue, guid: str, revision: int, record: AgentRecord) -> int | None:
        data = record.model_dump_json().encode()
        try:
            with nats_edge():
                if revision:
                    return await kv.update(guid, data, last=revision)
                return await kv.create(guid, data)
        except WrongLastSequence:
            return None

    async def _mirror(self, old: AgentRecord | None, new: AgentRecord) -> None:
        """Keep the directory copy in step: present while the scope is shared, gone otherwise."""
        key = self._layout.directory_key(new.guid)
        if new.scope in MIRRORED_SCOPES:
            kv = await self._directory.kv()
            self._shared.apply(key, await kv.put(key, new.model_dump_json().encode()), new)
        elif (old is not None and old.scope in MIRRORED_SCOPES) or self._shared.get(key) is not None:
            await self.unshare(key)

    async def unshare(self, key: str, last: int | None = None) -> bool:
        """Delete a directory copy (by CAS when ``last`` is given); False if it changed meanwhile."""
        kv = await self._directory.kv()
        held = self._shared.get(key)
        try:
            with nats_edge():
                await kv.delete(key, last=last)
        except JetStreamError:
            return False
        # The delete marker's revision is not returned; any later write has a higher one than this.
        self._shared.apply(key, (last or (held[0] if held else 0)) + 1, None)
        return True

    async def remove(self, guid: str, revision: int) -> bool:
        """Delete an entry still at ``revision`` (and its directory copy); False if it was written since."""
        async with self._writing.setdefault(guid, asyncio.Lock()):
            kv = await self._registry.kv()
            try:
                with nats_edge():
                    await kv.delete(guid, last=revision)
            except JetStreamError:
                return False  # e.g. registered again: not garbage any more
            self._own.apply(guid, revision + 1, None)
            key = self._layout.directory_key(guid)
            if self._shared.get(key) is not None:
                await self.unshare(key)
            return True
