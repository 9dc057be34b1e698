"""The results layer for lexical and hybrid searches: exact query text -> results, valid for
one version of the memory.

Dense entries (`result_cache`) are patched by each write, because a new slot's cosine with a
cached query is all it takes to know where it ranks. A BM25 score is not local like that:
every add or delete changes the collection's statistics (the number of slots, their mean
length, each word's document frequency), hence every lexical score, and a hybrid score is
normalised over its candidates as well. So a cached lexical or hybrid result is served only
while the memory is at the version it was computed at; the first lookup after any write
drops it. Entries are keyed by the exact query text (two texts that embed alike may share no
word) and the search's k, filter, mode and fusion settings.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..types import HitText, Legs

_ENTRY_OVERHEAD = 600  # bytes of bookkeeping per entry beyond its strings (CPython 3.11)
_HIT_OVERHEAD = 240


@dataclass(frozen=True)
class TextEntry:
    """Cached hits of one query, in rank order, and the memory version they hold for."""

    version: int
    scores: tuple[float, ...]
    addrs: tuple[int, ...]
    rows: tuple[HitText, ...]
    legs: tuple[Legs | None, ...]
    nbytes: int


class TextResultCache:
    """LRU of lexical / hybrid results under a byte budget; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, Any], TextEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.dropped_stale = 0

    def lookup(self, text: str, key: Any, version: int) -> TextEntry | None:
        with self._lock:
            entry = self._entries.get((text, key))
            if entry is not None and entry.version != version:
                self._pop((text, key))
                self.dropped_stale += 1
                entry = None
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end((text, key))
            self.hits += 1
            return entry

    def put(
        self,
        text: str,
        key: Any,
        version: int,
        scores: list[float],
        addrs: list[int],
        rows: list[HitText],
        legs: list[Legs | None],
    ) -> None:
        nbytes = (
            _ENTRY_OVERHEAD
            + len(text)
            + sum(_HIT_OVERHEAD + len(i) + len(t) + len(m) for i, t, m in rows)
        )
        if nbytes > self.max_bytes:
            return
        entry = TextEntry(version, tuple(scores), tuple(addrs), tuple(rows), tuple(legs), nbytes)
        with self._lock:
            self._pop((text, key))
            self._entries[(text, key)] = entry
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                self._pop(next(iter(self._entries)))

    def _pop(self, key: tuple[str, Any]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "dropped_stale": self.dropped_stale,
            }
