"""`QueryCache`: the two cache layers behind the few calls `Memory` makes (DESIGN.md, "The
query cache").

Memory calls it at four points: `encode` before the embedder, `lookup` before the index,
`store` after a search (under the read lock, so no write can slip in between the search and
the store), and `apply_write` after a write has updated the index (under the write lock).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..types import CachedHit, Hit, HitText, Legs
from .config import CacheConfig
from .embedding_cache import EmbeddingCache
from .result_cache import GroupKey, Match, ResultCache
from .text_results import TextEntry, TextResultCache

logger = logging.getLogger(__name__)


def _cached_hits(
    scores: Sequence[float],
    addrs: Sequence[int],
    rows: Sequence[HitText],
    similarity: float | None,
    legs: Sequence[Legs | None] | None = None,
) -> list[Hit]:
    """The hits of a cached entry, each marked `cached` (`similarity`: of a semantic hit)."""
    return [
        CachedHit(
            i,
            score,
            text,
            address=addr,
            metadata_json=meta,
            cache_similarity=similarity,
            legs=None if legs is None else legs[n],
            written_at=written_at,
        )
        for n, (score, addr, (i, text, meta, written_at)) in enumerate(
            zip(scores, addrs, rows, strict=True)
        )
    ]


def group_key(k: int, where: dict | None) -> GroupKey:
    """Entries are shared only between searches with the same k and the same filter."""
    return k, "" if where is None else json.dumps(where, sort_keys=True, separators=(",", ":"))


class QueryCache:
    """Text -> embedding, query vector -> dense results and query text -> lexical / hybrid
    results caches of one memory; thread-safe, RAM only."""

    def __init__(self, config: CacheConfig, dim: int, version: int) -> None:
        self.config = config
        self.embeddings = EmbeddingCache(config.embedding_max_bytes)
        self.results = ResultCache(
            dim, config.max_bytes, config.threshold, config.ttl_seconds, version
        )
        self.texts = TextResultCache(config.text_max_bytes)

    def encode(self, texts: list[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        return self.embeddings.encode(texts, embed)

    def lookup(self, queries: np.ndarray, key: GroupKey) -> list[list[Hit] | None]:
        """Per query, the cached hits (marked `cached`) or None on a miss."""
        out: list[list[Hit] | None] = []
        for vector in queries:
            found = self.results.lookup(vector, key)
            if found is None:
                out.append(None)
                continue
            entry, similarity = found
            semantic = similarity if entry.vector.tobytes() != vector.tobytes() else None
            out.append(_cached_hits(entry.scores, entry.addrs, entry.rows, semantic))
        return out

    def store(
        self, queries: np.ndarray, key: GroupKey, where: Any, results: list[list[Hit]], version: int
    ) -> None:
        """Cache fresh results; `where` is the compiled filter a later write is matched with."""
        for vector, hits in zip(queries, results, strict=True):
            self.results.put(
                vector,
                key,
                where,
                [h.score for h in hits],
                [h.address for h in hits],
                [h.hit_text() for h in hits],
                version,
            )

    def lookup_texts(self, texts: list[str], key: Any, version: int) -> list[list[Hit] | None]:
        """Per text, the cached lexical / hybrid hits computed at `version`, or None."""
        out: list[list[Hit] | None] = []
        for text in texts:
            entry = self.texts.lookup(text, key, version)
            out.append(
                None
                if entry is None
                else _cached_hits(entry.scores, entry.addrs, entry.rows, None, entry.legs)
            )
        return out

    def store_texts(
        self, texts: list[str], key: Any, results: list[list[Hit]], version: int
    ) -> None:
        for text, hits in zip(texts, results, strict=True):
            entry = TextEntry(
                version,
                tuple(h.score for h in hits),
                tuple(h.address for h in hits),
                tuple(h.hit_text() for h in hits),
                tuple(h.legs for h in hits),
            )
            self.texts.put(text, key, entry)

    def apply_write(
        self,
        version: int,
        removed: np.ndarray,
        addrs: np.ndarray,
        vectors: np.ndarray,
        rows: list[HitText],
        match: Match,
    ) -> None:
        """Patch entries for a committed write; on any failure forget everything instead."""
        try:
            self.results.apply_write(version, removed, addrs, vectors, rows, match)
        except Exception:  # a cache bug must never serve stale results nor fail a write
            logger.exception("query cache update failed; cache cleared")
            self.results.clear(version)

    def clear(self, version: int) -> None:
        """Forget cached results (the embeddings stay valid: the embedder did not change)."""
        self.results.clear(version)
        self.texts.clear()

    def stats(self) -> dict[str, Any]:
        """Figures for `Memory.stats()['cache']` (read by the evaluation harness)."""
        return {
            "enabled": True,
            **self.results.stats(),
            "embedding": self.embeddings.stats(),
            "text_results": self.texts.stats(),
        }
