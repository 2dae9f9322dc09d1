"""The cross-process lock boundary: a named lock stored in a KV bucket, taken atomically, expiring if its holder dies.

Taken with KV ``create`` (atomic), or by compare-and-set over an expired holder; the holder renews by
acquiring again before the expiry. A holder that dies blocks the others for at most ``ttl_s``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time

import nats.js.errors

from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.layout import Layout


class KvLock:
    """One lock (``lock.<name>``) in ``bucket``, owned by this object's random id."""

    def __init__(self, bucket: Bucket, name: str, ttl_s: float) -> None:
        self.bucket = bucket
        self.key = Layout.lock_key(name)
        self.ttl_s = ttl_s
        self.owner = secrets.token_hex(8)
        self._revision: int | None = None

    @property
    def held(self) -> bool:
        return self._revision is not None

    def _value(self) -> bytes:
        return json.dumps({"owner": self.owner, "expiresAt": time.time() + self.ttl_s}).encode()

    async def acquire(self) -> bool:
        """Take or renew the lock; False if another live holder has it."""
        kv = await self.bucket.kv()
        self._revision = None
        try:
            self._revision = await kv.create(self.key, self._value())
            return True
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        try:
            entry = await kv.get(self.key)
        except nats.js.errors.KeyNotFoundError:
            return False  # released meanwhile; the next round takes it
        if not self._free_for_us(entry.value):
            return False
        try:
            self._revision = await kv.update(self.key, self._value(), last=entry.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        return True

    def _free_for_us(self, raw: bytes | None) -> bool:
        try:
            holder = json.loads(raw or b"")
            owner, expires = holder["owner"], float(holder["expiresAt"])
        except (ValueError, KeyError, TypeError):
            return True  # unreadable: nobody can be relying on it
        return bool(owner == self.owner or expires <= time.time())

    async def release(self) -> None:
        """Give the lock back if we still hold it (a CAS delete never removes a successor's lock)."""
        revision, self._revision = self._revision, None
        if revision is None:
            return
        kv = await self.bucket.kv()
        with contextlib.suppress(nats.js.errors.APIError):  # taken over after expiry: not ours to delete
            await kv.delete(self.key, last=revision)
