"""The read path of a memory: query -> vectors -> query cache -> index search -> hits.

`Memory.search` checks its arguments and hands them here. A text query goes through the
cache's text -> embedding layer before the embedder; each query vector is looked up in the
results layer, only the misses are searched (under the index's read lock, so no write lands
between a search and the cache fill), and FAISS (score, address) rows become `Hit`s with the
slot rows read for the whole batch at once. A lexical or hybrid text query takes the other
branch: BM25 from the slot table's FTS5 index, fused with the dense leg (`hybrid.fuse`),
cached by exact text for one version. The cache hooks of writes (patch cached results,
clear them after a seal) and a read-only replica's catch-up live here too, beside the cache.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import slot_times
from .cache import CacheConfig, QueryCache, group_key
from .errors import InvalidInputError
from .hybrid import DEFAULT_HYBRID, DENSE, HYBRID, LEXICAL, HybridConfig, fuse, resolve_mode
from .index.tiered import SearchKnobs, TieredIndex
from .read_counts import ReadCounts, ReadTotals
from .store.slot_table import SlotTable
from .types import Hit, HitText, Legs, Slot
from .validation import as_list, check_texts, check_vectors, is_text_batch

Embed = Callable[[list[str]], np.ndarray]
WhereSQL = tuple[str, list[Any]]
# Expired slots stay in the index until compaction retires them. A search without a filter
# skips them by asking FAISS for this many more hits at most; past it, the search runs with
# the visible slots as its filter (a memory whose writer never compacts).
MAX_HIDDEN_OVERFETCH = 1_024
_NO_ADDRS = np.empty(0, np.int64)


class ReadPath:
    """Searches one memory's index through its query cache; hydrates hits from its table."""

    def __init__(
        self,
        index: TieredIndex,
        table: SlotTable,
        cache: CacheConfig | None,
        embed: Embed,
        check_open: Callable[[], None],
    ) -> None:
        self._index = index
        self._table = table
        self._embed = embed
        self._check_open = check_open  # raises once the memory is closed
        self._dim = index.manifest.dim
        self.cache = None if cache is None else QueryCache(cache, self._dim, index.version)
        self.reads = ReadTotals()
        # Expiry: the addresses hidden now (expired, not yet retired), and when the next
        # live slot expires; until then no search asks the table.
        self._hidden = _NO_ADDRS
        self._next_expiry = np.inf
        self.refresh_expiry()

    # -- search ------------------------------------------------------------------------
    def search(
        self,
        query: Any,
        k: int,
        where: dict | None,
        where_sql: WhereSQL | None,
        use_cache: bool,
        overrides: SearchKnobs,
        mode: str | None = None,
        hybrid: HybridConfig | None = None,
        text_vectors: Any = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Hits for a query (str or 1-D vector -> list[Hit]) or a batch (-> list per query).
        `overrides` (nprobe, refine_factor) bypass the cache, whose entries hold results
        of the memory's own settings. `mode` None is hybrid for text when the memory has a
        lexical index (`hybrid.DEFAULT_TEXT_MODE`), else dense. `text_vectors`: the text
        queries' embeddings, made by the caller (then the embedder is not called)."""
        qcache = self.cache if use_cache and not overrides else None
        is_text = isinstance(query, str) or is_text_batch(query)
        mode = self.resolve_mode(mode, is_text)
        given = None
        if text_vectors is not None:
            if not is_text:
                raise InvalidInputError("query_vectors go with text queries only")
            n = len(as_list(query, "query"))
            given = check_vectors(text_vectors, self._dim, n, what="query_vectors")
        if mode != DENSE:
            texts = check_texts(as_list(query, "query"))
            by_text = self._search_texts(
                texts, k, where, where_sql, qcache, overrides, mode, hybrid or DEFAULT_HYBRID, given
            )
            return by_text[0] if isinstance(query, str) else by_text
        single, queries = self._query_vectors(query, qcache, given)
        self.catch_up()
        now, hidden = self.visibility()
        key = group_key(k, where)
        found: list[list[Hit] | None] = (
            qcache.lookup(queries, key) if qcache else [None] * len(queries)
        )
        todo = [i for i, hits in enumerate(found) if hits is None]
        if todo:
            missed = queries if len(todo) == len(queries) else queries[todo]
            with self._index.lock.read():
                self._check_open()
                scores, addrs = self._dense(missed, k, where_sql, overrides, now, hidden)
                fresh = self._hydrate(scores, addrs)
                if qcache:  # under the read lock: no write between the search and the store
                    qcache.store(missed, key, where_sql, fresh, self._index.version)
            for i, hits in zip(todo, fresh, strict=True):
                found[i] = hits
            self._index.rebalance_in_background()
        self._count(found, dense=len(todo))  # type: ignore[arg-type]
        return found[0] if single else found  # type: ignore[return-value]

    def _count(self, results: list[list[Hit]], dense: int = 0, lexical: int = 0) -> None:
        n = len(results)
        self.reads.record(
            ReadCounts(
                searches=n,
                dense_queries=dense,
                lexical_queries=lexical,
                cache_hits=n - max(dense, lexical),
                slots_read=sum(map(len, results)),
                hops=n,
            )
        )

    # -- expiry ------------------------------------------------------------------------
    def visibility(self) -> tuple[float, np.ndarray]:
        """(now, addresses of the slots expired and not yet retired). The table is asked only
        once the next known expiry time has passed (never, in a memory without ttls), so a
        search takes the write lock only at the rare moment a slot expires."""
        now = slot_times.now()
        if now >= self._next_expiry:
            with self._index.lock.write():  # one refresh at a time, no search in between
                if now >= self._next_expiry:
                    self.refresh_expiry(now)
        return now, self._hidden

    def refresh_expiry(self, now: float | None = None) -> None:
        """Under the write lock (or before any search): read the hidden set and the next
        expiry time from the table; when the set changed, drop cached results (they may hold
        a slot that just expired)."""
        now = slot_times.now() if now is None else now
        hidden = self._table.expired_addrs(now)
        if not np.array_equal(hidden, self._hidden) and self.cache is not None:
            self.cache.clear(self._index.version)
        self._hidden = hidden
        self._next_expiry = self._table.next_expiry(after=now)

    def _dense(
        self,
        queries: np.ndarray,
        k: int,
        where_sql: WhereSQL | None,
        overrides: SearchKnobs,
        now: float,
        hidden: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Under the read lock: FAISS (scores, addresses) of the top-k visible slots passing
        `where` (-1 padded), expired slots skipped (see MAX_HIDDEN_OVERFETCH)."""
        allowed = None
        if where_sql is not None or len(hidden) > MAX_HIDDEN_OVERFETCH:
            visible = self._table.unexpired_where(where_sql, now) if len(hidden) else where_sql
            allowed = self._table.matching_addrs(*visible)  # type: ignore[misc]
            if not len(allowed):
                return _padded(len(queries), k)
            return self._index.search(queries, k, allowed, **overrides)
        if not len(hidden):
            return self._index.search(queries, k, None, **overrides)
        scores, addrs = self._index.search(queries, k + len(hidden), None, **overrides)
        keep = ~np.isin(addrs, hidden)
        out_scores, out_addrs = _padded(len(queries), k)
        for row in range(len(queries)):
            kept = np.flatnonzero(keep[row])[:k]
            out_scores[row, : len(kept)] = scores[row, kept]
            out_addrs[row, : len(kept)] = addrs[row, kept]
        return out_scores, out_addrs

    def resolve_mode(self, mode: str | None, is_text: bool) -> str:
        """The mode a search of this memory runs in (`hybrid.resolve_mode`)."""
        return resolve_mode(mode, is_text, self._table.has_lexical())

    def _search_texts(
        self,
        texts: list[str],
        k: int,
        where: dict | None,
        where_sql: WhereSQL | None,
        qcache: QueryCache | None,
        overrides: SearchKnobs,
        mode: str,
        hybrid: HybridConfig,
        given: np.ndarray | None = None,
    ) -> list[list[Hit]]:
        """Lexical or hybrid hits per text, through the exact-text results cache; `given`:
        the texts' embeddings, made by the caller."""
        self.catch_up()
        now, hidden = self.visibility()
        key = (group_key(k, where), mode, hybrid.key() if mode == HYBRID else None)
        version = self._index.version
        found: list[list[Hit] | None] = (
            qcache.lookup_texts(texts, key, version) if qcache else [None] * len(texts)
        )
        todo = [i for i, hits in enumerate(found) if hits is None]
        if not todo:
            self._count(found)  # type: ignore[arg-type]
            return found  # type: ignore[return-value]
        missed = [texts[i] for i in todo]
        vectors = None
        if mode == HYBRID and given is not None:
            vectors = given[todo]
        elif mode == HYBRID:
            vectors = qcache.encode(missed, self._embed) if qcache else self._embed(missed)
        with self._index.lock.read():
            self._check_open()
            fresh = self._fused(missed, vectors, k, where_sql, overrides, mode, hybrid, now, hidden)
            if qcache:  # under the read lock: no write between the search and the store
                qcache.store_texts(missed, key, fresh, self._index.version)
        for i, hits in zip(todo, fresh, strict=True):
            found[i] = hits
        if vectors is not None:
            self._index.rebalance_in_background()
        self._count(found, dense=len(todo) if vectors is not None else 0, lexical=len(todo))  # type: ignore[arg-type]
        return found  # type: ignore[return-value]

    def _fused(
        self,
        texts: list[str],
        vectors: np.ndarray | None,
        k: int,
        where_sql: WhereSQL | None,
        overrides: SearchKnobs,
        mode: str,
        hybrid: HybridConfig,
        now: float,
        hidden: np.ndarray,
    ) -> list[list[Hit]]:
        """Under the read lock: each text's lexical leg, and for hybrid its dense leg, fused."""
        fetch_k = k if mode == LEXICAL else max(k, hybrid.fetch_k)
        empty = np.empty(0, np.float32), np.empty(0, np.int64)
        dense: list[tuple[np.ndarray, np.ndarray]] = [empty] * len(texts)
        if vectors is not None:
            scores, addrs = self._dense(vectors, fetch_k, where_sql, overrides, now, hidden)
            dense = list(zip(scores, addrs, strict=True))
        lexical_where = self._table.unexpired_where(where_sql, now) if len(hidden) else where_sql
        ranked: list[list[tuple[float, int, Legs]]] = []
        for text, dense_leg in zip(texts, dense, strict=True):
            lexical_leg = self._table.lexical_search(text, fetch_k, lexical_where)
            if mode == LEXICAL:
                ls, la = lexical_leg
                ranked.append(
                    [
                        (s, a, (None, None, s, r))
                        for r, (s, a) in enumerate(zip(ls.tolist(), la.tolist(), strict=True), 1)
                    ]
                )
            else:
                ranked.append(fuse(hybrid, dense_leg, lexical_leg, k))
        rows = self._table.fetch([a for hits in ranked for _, a, _ in hits])
        return [
            [Hit.from_row(rows[a], s, legs) for s, a, legs in hits if a in rows] for hits in ranked
        ]

    def split_queries(self, query: Any) -> tuple[bool, list[Any]]:
        """(is a single query, the queries one by one: texts, or 1-D unit vectors)."""
        if isinstance(query, str) or is_text_batch(query):
            return isinstance(query, str), check_texts(as_list(query, "query"))
        single, vectors = self._query_vectors(query, None)
        return single, list(vectors)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of `texts`, through the cache's embedding layer where there is one."""
        return self.cache.encode(texts, self._embed) if self.cache else self._embed(texts)

    def vectors_of(self, hits: list[Hit]) -> tuple[list[Hit], np.ndarray]:
        """(the hits still stored, their stored vectors): the keys a multi-hop read adds."""
        with self._index.lock.read():
            found, vectors = self._index.vectors_of(np.array([h.address for h in hits]))
        return [h for h, f in zip(hits, found.tolist(), strict=True) if f], vectors

    def nearest(
        self, vectors: np.ndarray, k: int, where_sql: WhereSQL | None, now: float
    ) -> list[list[Hit]]:
        """Under the caller's write lock: the k visible slots nearest each vector (passing
        `where`), uncached and uncounted: what a write's dedupe compares with."""
        hidden = self._table.expired_addrs(now)
        scores, addrs = self._dense(vectors, k, where_sql, {}, now, hidden)
        return self._hydrate(scores, addrs)

    def _query_vectors(
        self, query: Any, qcache: QueryCache | None, given: np.ndarray | None = None
    ) -> tuple[bool, np.ndarray]:
        """(is a single query, (nq, dim) unit query vectors); texts seen before skip the
        embedder, and so do texts whose vectors the caller `given`."""
        if isinstance(query, str) or is_text_batch(query):
            texts = check_texts(as_list(query, "query"))
            if given is not None:
                return isinstance(query, str), given
            vectors = qcache.encode(texts, self._embed) if qcache else self._embed(texts)
            return isinstance(query, str), vectors
        if isinstance(query, (list, tuple)) and not query:
            raise InvalidInputError("query is an empty list")
        single = np.ndim(query) == 1
        return single, check_vectors(query, self._dim, what="query vectors")

    def _hydrate(self, scores: np.ndarray, addrs: np.ndarray) -> list[list[Hit]]:
        """Turn FAISS (score, address) rows into Hits, rows read for the batch at once (the
        row cache, then one SQLite query for the rest). On a small index this costs as much as
        the search itself, hence one C-level map per query."""
        rows = self._table.fetch(addrs[addrs >= 0].tolist())
        make, pairs = Hit.from_row, list(zip(scores.tolist(), addrs.tolist(), strict=True))
        try:  # every row found, no -1 pad: the common case, built by C-level map
            return [
                list(map(make, map(rows.__getitem__, row_addrs), row_scores))
                for row_scores, row_addrs in pairs
            ]
        except KeyError:  # fewer than k hits, or a slot deleted since it was found
            get = rows.get
            return [
                [
                    make(row, score)
                    for score, addr in zip(row_scores, row_addrs, strict=True)
                    if (row := get(addr)) is not None
                ]
                for row_scores, row_addrs in pairs
            ]

    def iter_slots(self, batch: int) -> Iterator[tuple[list[Slot], np.ndarray]]:
        """(slots, their vectors) of every live slot in chunks, under the read lock."""
        _, hidden = self.visibility()
        with self._index.lock.read():
            for addrs, vectors in self._index.iter_live_vectors(batch):
                if len(hidden):
                    visible = ~np.isin(addrs, hidden)
                    addrs, vectors = addrs[visible], vectors[visible]
                rows = self._table.fetch(addrs.tolist())
                slots = [
                    Slot(i, text, json.loads(meta), a, written, expires)
                    for i, text, meta, a, written, expires in map(rows.__getitem__, addrs.tolist())
                ]
                yield slots, vectors

    # -- cache hooks -------------------------------------------------------------------
    def after_write(
        self,
        removed: np.ndarray,
        addrs: np.ndarray,
        vectors: np.ndarray,
        rows: list[HitText],
        expires: list[float | None] | None = None,
    ) -> None:
        """Under the write lock, after the index applied a write: patch cached results.
        `expires`: the new slots' expiry times; one already past (an imported history) is
        hidden at once, so the cache is dropped rather than patched with it."""
        soonest = min((e for e in expires or () if e is not None), default=np.inf)
        self._next_expiry = min(self._next_expiry, soonest)
        if self.cache is None:
            return
        if soonest <= slot_times.now():
            self.cache.clear(self._index.version)
            return
        self.cache.apply_write(
            self._index.version,
            removed,
            addrs,
            vectors,
            rows,
            lambda where, among: set(
                self._table.matching_addrs(where[0], where[1], among=among.tolist()).tolist()
            ),
        )

    def after_seal(self) -> None:
        """After a seal or compaction: sealed (IVF) shards answer approximately, so results
        cached while those slots were searched exactly may differ from a fresh search."""
        if self.cache is not None:
            with self._index.lock.write():
                self.cache.clear(self._index.version)

    def catch_up(self) -> None:
        """A read-only replica applies the writer's commits before it searches; rows and
        results cached here may be stale once another process wrote."""
        self._index.catch_up(on_change=self._forget_cached)

    def _forget_cached(self) -> None:
        self._table.forget_cached_rows()  # the writer may have deleted rows cached here
        self.refresh_expiry()  # and written slots that expire
        if self.cache is not None:
            self.cache.clear(self._index.version)


def _padded(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """No hit yet: FAISS's own padding (score -inf, address -1) for nq queries of k."""
    return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
