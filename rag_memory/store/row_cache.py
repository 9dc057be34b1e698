"""An LRU cache of slot rows by address, bounded in bytes, in front of SQLite.

A slot address is never reused and its row (id, text, metadata) never changes — an upsert makes
a new address — so a cached row can only go stale by being deleted, and deletes evict it.
Hydrating a search's hits then costs dictionary lookups instead of one SQLite query, which on
a small index costs more than the FAISS search itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

Row = tuple  # (id, text, metadata JSON, addr)
_OVERHEAD = 200  # bytes per entry beyond its strings: tuple, dict slot, ints


class RowCache:
    """Thread-safe LRU of rows keyed by address; `max_bytes=0` disables it."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._rows: OrderedDict[int, Row] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(row: Row) -> int:
        return len(row[0]) + len(row[1]) + len(row[2]) + _OVERHEAD

    def get_many(self, addrs: Iterable[int]) -> tuple[dict[int, Row], list[int]]:
        """(cached rows, addresses not cached)."""
        found, missing = {}, []
        with self._lock:
            for addr in addrs:
                row = self._rows.get(addr)
                if row is None:
                    missing.append(addr)
                else:
                    self._rows.move_to_end(addr)
                    found[addr] = row
        return found, missing

    def put_many(self, rows: Iterable[Row]) -> None:
        if not self.max_bytes:
            return
        with self._lock:
            for row in rows:
                if row[3] not in self._rows:
                    self._rows[row[3]] = row
                    self._bytes += self._size(row)
            while self._bytes > self.max_bytes and self._rows:
                _, old = self._rows.popitem(last=False)
                self._bytes -= self._size(old)

    def discard(self, addrs: Iterable[int]) -> None:
        with self._lock:
            for addr in addrs:
                row = self._rows.pop(addr, None)
                if row is not None:
                    self._bytes -= self._size(row)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._bytes = 0
