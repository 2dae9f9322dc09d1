"""The bounded-memory boundary: a mapping that keeps at most N entries, dropping the least recently used first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruTable(Generic[K, V]):
    """A dict bounded to ``max_entries``, evicting the least recently used entry."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def items(self) -> list[tuple[K, V]]:
        """The entries, least recently used first (a copy: the table may change while it is read)."""
        return list(self._data.items())

    def __len__(self) -> int:
        return len(self._data)
