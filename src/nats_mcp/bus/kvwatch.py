"""The key-watch boundary: wait for the next change of one KV key, for the domain's waits (no polling loop).

``async with KeyWatch(kv, key) as watch: await watch.changed(revision, timeout)`` — the watch starts before the
caller reads the key, and a change is any value of the key newer than the revision the caller read, so a write
made between the caller's read and its wait is not missed. The change comes with the new value, so a crowd of
waiters woken by one write need not each read the key again.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any

import nats.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from nats_mcp.bus.errors import nats_edge


class KeyWatch:
    """A watch of one key of ``kv``; :meth:`changed` returns True on a change, False when ``timeout`` passes."""

    def __init__(self, kv: KeyValue, key: str) -> None:
        self._kv = kv
        self._key = key
        self._watcher: Any = None

    async def __aenter__(self) -> KeyWatch:
        with nats_edge():
            self._watcher = await self._kv.watch(self._key)
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def changed(self, revision: int, timeout: float) -> tuple[int, bytes] | None:
        """Wait up to ``timeout`` seconds for a value of the key newer than ``revision``: (its revision, its value,
        empty for a delete); None when the time passed first."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                with nats_edge():
                    entry = await self._watcher.updates(timeout=left)
            except (nats.errors.TimeoutError, TimeoutError):
                return None
            if entry is not None and int(entry.revision or 0) > revision:
                deleted = entry.operation in (KV_DEL, KV_PURGE)
                return int(entry.revision or 0), b"" if deleted else bytes(entry.value or b"")
