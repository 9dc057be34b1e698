"""The results layer for lexical and hybrid searches: query text -> results, valid for one
version of the memory.

Dense entries (`result_cache`) are patched by each write, because a new slot's cosine with a
cached query is all it takes to know where it ranks. A BM25 score is not local like that:
every add or delete changes the collection's statistics (the number of slots, their mean
length, each word's document frequency), hence every lexical score, and a hybrid score is
normalised over its candidates as well. So a cached lexical or hybrid result is served only
while the memory is at the version it was computed at; the first lookup after any write
drops it. Entries are keyed by the query text with whitespace collapsed (words, which is all
BM25 and the embedder read, are unchanged by it; two texts that merely embed alike may share
no word, so there is no semantic matching here) and the search's k, filter, mode and fusion.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..types import HitText, Legs
from .embedding_cache import collapse_whitespace
from .lru import ByteLRU

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


def _size(key: tuple[str, Any], entry: TextEntry) -> int:
    return (
        _ENTRY_OVERHEAD
        + len(key[0])
        + sum(_HIT_OVERHEAD + len(i) + len(t) + len(m) for i, t, m, _ in entry.rows)
    )


class TextResultCache:
    """LRU of lexical / hybrid results under a byte budget; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self._lru: ByteLRU[tuple[str, Any], TextEntry] = ByteLRU(max_bytes, _size)
        self._lock = threading.Lock()
        self.hits = self.misses = self.dropped_stale = 0

    def lookup(self, text: str, key: Any, version: int) -> TextEntry | None:
        """The entry for (text, key) if it was computed at `version`; an older one is dropped."""
        full_key = (collapse_whitespace(text), key)
        with self._lock:
            entry = self._lru.get(full_key)
            if entry is not None and entry.version != version:
                self._lru.pop(full_key)
                self.dropped_stale += 1
                entry = None
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
            return entry

    def put(self, text: str, key: Any, entry: TextEntry) -> None:
        with self._lock:
            self._lru.put((collapse_whitespace(text), key), entry)

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "entries": len(self._lru),
                "bytes": self._lru.bytes,
                "max_bytes": self._lru.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "dropped_stale": self.dropped_stale,
            }
