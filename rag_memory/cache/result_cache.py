"""The query -> results layer: cached top-k results, kept equal to what a fresh search returns.

GPTCache's users report the two failures of semantic caches: a different question answered
with a cached answer (a similarity threshold far too loose for sentence embeddings, see
bench/cache_threshold_study.py) and stale answers after the data changed (entries only expire
by TTL). Here every entry is *patched by each write* instead of expiring:

* add: a new slot whose score against an entry's query beats the entry's k-th score (or the
  entry holds fewer than k) is inserted where an exact search would put it. Only slots that
  pass the entry's `where` filter count; the caller's `match` asks SQLite which ones do, so
  the filter grammar exists once.
* delete: the slot leaves every entry holding it (an address -> entries index); an entry that
  held k hits and now holds fewer cannot know its next hit, so it is dropped.
* anything ambiguous (a new score within `SCORE_EPS` of a neighbour, where numpy and FAISS
  could round differently) drops the entry rather than guess; the next search refills it.
* a memory-wide version number guards the rest: a write that does not follow the version the
  cache last saw (a missed write) clears the whole cache.

Entries are grouped by (k, canonical where); each group keeps its query vectors in one matrix
so a semantic lookup or a write's scoring is one matrix product.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..types import HitText

# Scores are cosines of float32 unit vectors; FAISS (SIMD or BLAS) and numpy round the same
# dot product differently by a few ulps (~1e-7). Closer than this is treated as a tie.
SCORE_EPS = 1e-5
# The same text embedded in two different batches (other padding) differs by ~1e-7 in cosine:
# a lookup accepts cosine >= threshold - this, so threshold 1.0 still means "the same vector".
SAME_VECTOR_SLACK = 1e-6
# Bookkeeping beyond payload bytes (objects, lists, dict nodes; sys.getsizeof, CPython 3.11).
_ENTRY_OVERHEAD = 600
_HIT_OVERHEAD = 160

GroupKey = tuple[int, str]  # (k, canonical where JSON or "")
Match = Callable[[Any, np.ndarray], set[int]]  # (compiled where, addrs) -> matching addrs


@dataclass(eq=False)
class Entry:
    """One cached query: its vector and its hits, best first (scores, addrs, rows in step)."""

    group: _Group
    vector: np.ndarray
    scores: list[float]
    addrs: list[int]
    rows: list[HitText]
    created: float
    pos: int = -1
    nbytes: int = 0

    def size(self) -> int:
        return (
            self.vector.nbytes
            + _ENTRY_OVERHEAD
            + sum(_HIT_OVERHEAD + len(i) + len(t) + len(m) for i, t, m, _ in self.rows)
        )

    def kth(self) -> float:
        """The score a new slot must beat to enter, -inf while fewer than k hits are held."""
        return self.scores[-1] if len(self.scores) >= self.group.k else -np.inf


@dataclass(eq=False)
class _Group:
    """Entries sharing (k, where): their query vectors stacked for one matmul per lookup."""

    key: GroupKey
    where: Any  # compiled where (sql, params) or None
    dim: int
    k: int = field(init=False)
    vectors: np.ndarray = field(init=False)
    entries: list[Entry] = field(default_factory=list)
    exact: dict[bytes, Entry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.k = self.key[0]
        self.vectors = np.empty((8, self.dim), dtype=np.float32)

    def append(self, entry: Entry) -> None:
        n = len(self.entries)
        if n == len(self.vectors):
            self.vectors = np.concatenate([self.vectors, np.empty_like(self.vectors)])
        self.vectors[n] = entry.vector
        entry.pos = n
        self.entries.append(entry)
        self.exact[entry.vector.tobytes()] = entry

    def remove(self, entry: Entry) -> None:
        last = self.entries.pop()
        if last is not entry:  # move the last row into the hole
            self.vectors[entry.pos] = last.vector
            self.entries[entry.pos] = last
            last.pos = entry.pos
        del self.exact[entry.vector.tobytes()]

    def matrix(self) -> np.ndarray:
        return self.vectors[: len(self.entries)]


class ResultCache:
    """Cached top-k results with exact and semantic lookup, LRU by bytes, coherent with writes."""

    def __init__(
        self,
        dim: int,
        max_bytes: int,
        threshold: float,
        ttl_seconds: float | None,
        version: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dim = dim
        self.max_bytes = max_bytes
        self.threshold = threshold
        self.ttl = ttl_seconds
        self.version = version
        self._clock = clock
        self._lock = threading.Lock()
        self._groups: dict[GroupKey, _Group] = {}
        self._lru: OrderedDict[int, Entry] = OrderedDict()  # id(entry) -> entry
        self._by_addr: dict[int, set[Entry]] = {}
        self.bytes = 0
        self.counts = dict.fromkeys(
            (
                "hits",
                "semantic_hits",
                "misses",
                "evictions",
                "expired",
                "invalidations",
                "updates",
                "clears",
            ),
            0,
        )
        self.similarity_sum = 0.0
        self.similarity_min = 1.0

    def __len__(self) -> int:
        return len(self._lru)

    # -- reads -------------------------------------------------------------------------
    def lookup(self, vector: np.ndarray, key: GroupKey) -> tuple[Entry, float] | None:
        """(a copy of the matching entry, similarity) or None; 1.0 means an exact hit."""
        with self._lock:
            group = self._groups.get(key)
            entry, similarity = None, 1.0
            if group is not None:
                entry = group.exact.get(vector.tobytes())
                if entry is None and group.entries:
                    sims = group.matrix() @ vector
                    best = int(np.argmax(sims))
                    if sims[best] >= self.threshold - SAME_VECTOR_SLACK:
                        entry, similarity = group.entries[best], min(float(sims[best]), 1.0)
            if (
                entry is not None
                and self.ttl is not None
                and self._clock() - entry.created > self.ttl
            ):
                self._drop(entry, "expired")
                entry = None
            if entry is None:
                self.counts["misses"] += 1
                return None
            self._lru.move_to_end(id(entry))
            self.counts["hits"] += 1
            if entry.vector.tobytes() != vector.tobytes():
                self.counts["semantic_hits"] += 1
                self.similarity_sum += similarity
                self.similarity_min = min(self.similarity_min, similarity)
            return Entry(
                entry.group,
                entry.vector,
                list(entry.scores),
                list(entry.addrs),
                list(entry.rows),
                entry.created,
            ), similarity

    def put(
        self,
        vector: np.ndarray,
        key: GroupKey,
        where: Any,
        scores: list[float],
        addrs: list[int],
        rows: list[HitText],
        version: int,
    ) -> None:
        """Cache a fresh search result computed at `version` (ignored if the cache moved on)."""
        with self._lock:
            if version != self.version:
                return
            group = self._groups.get(key) or _Group(key, where, self.dim)
            if vector.tobytes() in group.exact:
                return  # another thread filled it first, with the same result
            entry = Entry(
                group,
                np.array(vector, dtype=np.float32),
                list(scores),
                list(addrs),
                list(rows),
                self._clock(),
            )
            entry.nbytes = entry.size()
            if entry.nbytes > self.max_bytes:
                return
            self._groups[key] = group
            group.append(entry)
            self._lru[id(entry)] = entry
            for addr in entry.addrs:
                self._by_addr.setdefault(addr, set()).add(entry)
            self.bytes += entry.nbytes
            self._evict()

    def stats(self) -> dict[str, Any]:
        """Counters, hit rate, mean / lowest similarity of semantic hits, entries and bytes."""
        with self._lock:
            counts = dict(self.counts)
            lookups = counts["hits"] + counts["misses"]
            semantic = counts["semantic_hits"]
            return {
                **counts,
                "hit_rate": counts["hits"] / lookups if lookups else 0.0,
                "semantic_similarity_mean": self.similarity_sum / semantic if semantic else None,
                "semantic_similarity_min": self.similarity_min if semantic else None,
                "entries": len(self._lru),
                "bytes": self.bytes,
                "max_bytes": self.max_bytes,
                "threshold": self.threshold,
                "ttl_seconds": self.ttl,
                "version": self.version,
            }

    # -- writes ------------------------------------------------------------------------
    def apply_write(
        self,
        version: int,
        removed: np.ndarray,
        addrs: np.ndarray,
        vectors: np.ndarray,
        rows: list[HitText],
        match: Match,
    ) -> None:
        """Patch every entry for a committed write (tombstoned `removed`, then new slots)."""
        with self._lock:
            if version != self.version + 1:
                self._clear(version)
                return
            self.version = version
            for addr in removed.tolist():
                for entry in list(self._by_addr.get(addr, ())):
                    self._remove_hit(entry, addr)
            if len(addrs):
                for group in list(self._groups.values()):
                    self._add_to_group(group, addrs, vectors, rows, match)
            self._evict()

    def clear(self, version: int) -> None:
        """Drop everything (the version guard, or a reader catching up on another process)."""
        with self._lock:
            self._clear(version)

    def _clear(self, version: int) -> None:
        if self._lru:
            self.counts["clears"] += 1
            self.counts["invalidations"] += len(self._lru)
        self._groups.clear()
        self._lru.clear()
        self._by_addr.clear()
        self.bytes = 0
        self.version = version

    def _remove_hit(self, entry: Entry, addr: int) -> None:
        if len(entry.scores) >= entry.group.k:
            self._drop(entry, "invalidations")  # its (k+1)-th hit is unknown: refill on demand
            return
        i = entry.addrs.index(addr)
        del entry.scores[i], entry.addrs[i], entry.rows[i]
        self._unlink(addr, entry)
        self._resize(entry)
        self.counts["updates"] += 1

    def _add_to_group(
        self,
        group: _Group,
        addrs: np.ndarray,
        vectors: np.ndarray,
        rows: list[HitText],
        match: Match,
    ) -> None:
        if not group.entries:
            return
        scores = group.matrix() @ vectors.T  # (entries, new slots)
        bar = (np.array([e.kth() for e in group.entries]) - SCORE_EPS)[:, None]
        contenders = (scores > bar).any(axis=0)
        if not contenders.any():
            return
        if group.where is not None:  # ask SQLite only about slots that could enter
            allowed = match(group.where, addrs[contenders])
            scores[:, ~np.isin(addrs, np.fromiter(allowed, np.int64, len(allowed)))] = -np.inf
        touched = np.flatnonzero((scores > bar).any(axis=1))
        # Capture (row, entry) first: dropping an entry moves another into its position.
        for i, entry in [(i, group.entries[i]) for i in touched]:
            row = scores[i]
            for j in np.flatnonzero(row > entry.kth() - SCORE_EPS):  # new slots in address order
                if not self._insert(entry, float(row[j]), int(addrs[j]), rows[j]):
                    break
            if entry.pos >= 0:
                self._resize(entry)
                self.counts["updates"] += 1

    def _insert(self, entry: Entry, score: float, addr: int, row: HitText) -> bool:
        """Put one new hit in place; False when the entry was dropped as ambiguous."""
        s, k = entry.scores, entry.group.k
        # Equal scores keep the earlier slot first, as FAISS's flat search does; new slots
        # come last, so the new hit goes after every score >= its own.
        pos = next((i for i, old in enumerate(s) if old < score), len(s))
        near = [s[i] for i in (pos - 1, pos) if 0 <= i < len(s)]
        if any(abs(old - score) < SCORE_EPS for old in near):
            self._drop(entry, "invalidations")
            return False
        if pos >= k:
            return True
        s.insert(pos, score)
        entry.addrs.insert(pos, addr)
        entry.rows.insert(pos, row)
        self._by_addr.setdefault(addr, set()).add(entry)
        if len(s) > k:
            s.pop()
            entry.rows.pop()
            self._unlink(entry.addrs.pop(), entry)
        return True

    # -- bookkeeping -------------------------------------------------------------------
    def _resize(self, entry: Entry) -> None:
        size = entry.size()
        self.bytes += size - entry.nbytes
        entry.nbytes = size

    def _drop(self, entry: Entry, reason: str) -> None:
        self.counts[reason] += 1
        group = entry.group
        group.remove(entry)
        entry.pos = -1
        if not group.entries:
            del self._groups[group.key]
        del self._lru[id(entry)]
        for addr in entry.addrs:
            self._unlink(addr, entry)
        self.bytes -= entry.nbytes

    def _unlink(self, addr: int, entry: Entry) -> None:
        holders = self._by_addr.get(addr)
        if holders is not None:
            holders.discard(entry)
            if not holders:
                del self._by_addr[addr]

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self._lru:
            self._drop(next(iter(self._lru.values())), "evictions")
