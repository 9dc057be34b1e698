"""How many times a memory was read: per answer and since the memory was opened.

Accuracy, speed and size are three measures of an external memory; the fourth is how many
accesses it needed to answer (the number of memory reads an answer cost, as the Memory
Networks literature counts hops). Each search adds what it did to the memory's running totals
and, inside `counting()`, to that block's own tally: `generate` counts its reads that way and
reports them in `Answer.timings["reads"]`. A contextvar keeps concurrent threads' tallies
apart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass


@dataclass
class ReadCounts:
    """Memory reads, summed over searches.

    Attributes:
        searches: search calls (one per query text or vector; a multi-hop read counts each hop).
        dense_queries: query vectors sent to the dense (FAISS) index.
        lexical_queries: queries sent to the lexical (FTS5 BM25) index.
        cache_hits: queries the query cache answered without touching an index.
        slots_read: slots returned to the caller (hits).
        hops: hops of multi-hop reads (1 per plain search).
    """

    searches: int = 0
    dense_queries: int = 0
    lexical_queries: int = 0
    cache_hits: int = 0
    slots_read: int = 0
    hops: int = 0

    def add(self, other: ReadCounts) -> None:
        """Add `other` in place (on every search: no dataclass introspection here)."""
        self.searches += other.searches
        self.dense_queries += other.dense_queries
        self.lexical_queries += other.lexical_queries
        self.cache_hits += other.cache_hits
        self.slots_read += other.slots_read
        self.hops += other.hops

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


_current: ContextVar[ReadCounts | None] = ContextVar("rag_memory_read_counts", default=None)


@contextmanager
def counting() -> Iterator[ReadCounts]:
    """A tally of the reads made inside the block (on this thread or task)."""
    tally = ReadCounts()
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)


class ReadTotals:
    """A memory's running totals (thread-safe), also fed into the current `counting()` tally."""

    def __init__(self) -> None:
        self._totals = ReadCounts()
        self._by_answers = ReadCounts()
        self._answers = 0
        self._lock = threading.Lock()

    def record(self, counts: ReadCounts) -> None:
        with self._lock:
            self._totals.add(counts)
        tally = _current.get()
        if tally is not None:
            tally.add(counts)

    def answered(self, tally: ReadCounts) -> None:
        """One answer was given, after the reads in `tally`."""
        with self._lock:
            self._answers += 1
            self._by_answers.add(tally)

    def stats(self) -> dict[str, object]:
        """`total` reads since open (every search), `answers` given, and the mean reads
        `per_answer` (of the searches answers made)."""
        with self._lock:
            n = self._answers
            per_answer = {k: v / n for k, v in self._by_answers.to_dict().items()} if n else {}
            return {"total": self._totals.to_dict(), "answers": n, "per_answer": per_answer}
