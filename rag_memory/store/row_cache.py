"""A cache of slot rows by address, bounded in bytes, in front of SQLite.

A slot address is never reused and its row (id, text, metadata) never changes — an upsert makes
a new address — so a cached row can only go stale by being deleted, and deletes evict it.
Hydrating a search's hits then costs dictionary lookups instead of one SQLite query, which on
a small index costs more than the FAISS search itself.

Recency is kept by two generations instead of a per-hit LRU list (the "generational" cache of
groupcache / 2Q-style designs): rows enter the young generation; a row found in the old one
is promoted; when the young generation fills half the budget it becomes the old one and the
previous old one is dropped. A hit then costs one dict lookup and no bookkeeping, and a search
whose rows are all young reads the young dict in place, without copying 640 rows per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from ..types import SlotRow

_OVERHEAD = 200  # bytes per entry beyond its strings: tuple, dict slot, ints


def _size(row: SlotRow) -> int:
    return len(row[0]) + len(row[1]) + len(row[2]) + _OVERHEAD


class RowCache:
    """Thread-safe two-generation cache of rows keyed by address; `max_bytes=0` disables it."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._young: dict[int, SlotRow] = {}
        self._old: dict[int, SlotRow] = {}
        self._young_bytes = 0
        self._lock = threading.Lock()

    def lookup(
        self, addrs: Sequence[int], load: Callable[[list[int]], list[SlotRow]]
    ) -> Mapping[int, SlotRow]:
        """addr -> row for those of `addrs` that exist: cached rows, and `load(addresses)` for
        the rest. Read-only to the caller: it may be the young generation itself."""
        with self._lock:
            young = self._young
            missing = [a for a in addrs if a not in young]
            if not missing:
                return young
            old = self._old
            promoted = [old[a] for a in missing if a in old]
            self._put(promoted)
        rest = [a for a in missing if a not in old]
        loaded = load(rest) if rest else []
        with self._lock:
            self._put(loaded)
        rows = {a: young[a] for a in addrs if a in young}
        rows.update((r[3], r) for r in (*promoted, *loaded))
        return rows

    def _put(self, rows: Iterable[SlotRow]) -> None:
        if not self.max_bytes:
            return
        for row in rows:
            if row[3] in self._young:
                continue
            size = _size(row)
            if self._young and self._young_bytes + size > self.max_bytes // 2:
                # a new generation begins; the old one is dropped
                self._old, self._young, self._young_bytes = self._young, {}, 0
            self._young[row[3]] = row
            self._young_bytes += size

    def discard(self, addrs: Iterable[int]) -> None:
        with self._lock:
            for addr in addrs:
                row = self._young.pop(addr, None)
                if row is not None:
                    self._young_bytes -= _size(row)
                self._old.pop(addr, None)

    def clear(self) -> None:
        with self._lock:
            self._young, self._old, self._young_bytes = {}, {}, 0
