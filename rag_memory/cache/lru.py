"""A map bounded by bytes that drops its least recently used entries first.

The embedding cache and the generator's slot KV cache both need exactly this; each keeps its
own lock and hit/miss counters around it (they count different things), so this class is not
thread-safe by itself.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteLRU(Generic[K, V]):
    """LRU by bytes: `size(key, value)` is an entry's cost; an entry larger than the whole
    budget is never stored."""

    def __init__(self, max_bytes: int, size: Callable[[K, V], int]) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The value, now the most recently used, or None."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store (or replace) `key`, then evict least recently used entries over the budget."""
        self.pop(key)
        size = self._size(key, value)
        if size > self.max_bytes:
            return
        self._entries[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            old_key, evicted = self._entries.popitem(last=False)
            self.bytes -= self._size(old_key, evicted)
            self.evictions += 1

    def pop(self, key: K) -> None:
        """Forget `key` (absent is fine)."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= self._size(key, old)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
