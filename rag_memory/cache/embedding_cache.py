"""The text -> embedding layer: a question text seen before skips the embedder.

On a CPU, embedding a question with MiniLM costs milliseconds while searching a flat shard of
a few thousand slots costs tens of microseconds, so repeated questions are served mostly by
this layer. The key is the text after Unicode NFC and whitespace normalisation (strip, runs of
whitespace -> one space): WordPiece and SentencePiece tokenisers split on whitespace, so these
variants embed alike. Case is *not* folded: that is true of uncased models only. On a miss the
*normalised* text is embedded, so every variant maps to one vector whichever came first.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable
from typing import Any

import numpy as np

from .lru import ByteLRU

_WHITESPACE = re.compile(r"\s+")
# Per-entry bookkeeping beyond the text and vector bytes: the dict node, the str and
# ndarray object headers (measured with sys.getsizeof on CPython 3.11, rounded up).
_ENTRY_OVERHEAD = 200


def collapse_whitespace(text: str) -> str:
    """`text` stripped, each run of whitespace one space."""
    return _WHITESPACE.sub(" ", text).strip()


def normalise(text: str) -> str:
    """The cache key of a question text (see the module docstring for what is folded)."""
    return collapse_whitespace(unicodedata.normalize("NFC", text))


class EmbeddingCache:
    """LRU map from normalised text to its unit vector, bounded by bytes; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self._lru: ByteLRU[str, np.ndarray] = ByteLRU(max_bytes, self._size)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._lru)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            looked_up = self.hits + self.misses
            return {
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self._lru.evictions,
                "hit_rate": self.hits / looked_up if looked_up else 0.0,
                "entries": len(self._lru),
                "bytes": self._lru.bytes,
                "max_bytes": self._lru.max_bytes,
            }

    @staticmethod
    def _size(key: str, vector: np.ndarray) -> int:
        return len(key.encode("utf-8")) + vector.nbytes + _ENTRY_OVERHEAD

    def encode(self, texts: list[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Vectors for `texts`, calling `embed` once for the texts not cached (or not at all)."""
        keys = [normalise(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for key in keys:
                vector = self._lru.get(key)
                if vector is not None:
                    found[key] = vector
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            # The embedder runs outside the lock: other threads' hits need not wait for it.
            fresh = embed(missing)
            for key, vector in zip(missing, fresh, strict=True):
                vector = np.array(vector, dtype=np.float32)  # own copy, never a view of a batch
                vector.setflags(write=False)
                found[key] = vector
            self._store(missing, found)
        fresh_keys = set(missing)
        with self._lock:
            n_missed = sum(1 for k in keys if k in fresh_keys)
            self.misses += n_missed
            self.hits += len(keys) - n_missed
        return np.stack([found[k] for k in keys])

    def _store(self, keys: list[str], vectors: dict[str, np.ndarray]) -> None:
        with self._lock:
            for key in keys:
                self._lru.put(key, vectors[key])

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()
