"""`Memory`, the facade: opens a memory directory and wires the embedder, the slot table and
the shards together. It holds no algorithm of its own; each part lives in its own module."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from . import slot_times
from .answering import GENERATED_KEY, ROLE_KEY, AnswersFromMemory
from .cache import CacheConfig
from .cache import resolve as resolve_cache
from .dedupe import NEAR_CANDIDATES, DedupePlan, Twin, check_dedupe, plan_dedupe
from .directory import MemoryFiles, create_directory, open_directory
from .embed import Embedder
from .embed.embedder import check_embedder_name
from .errors import (
    InvalidInputError,
    MemoryClosedError,
    ReadOnlyError,
)
from .hybrid import HybridConfig, check_mode, resolve_hybrid
from .index.budgets import check_budget, check_gpu_budget, resolve_budgets
from .index.config import IndexConfig
from .index.plan import check_trainable
from .index.tiered import SearchKnobs, TieredIndex
from .locks import check_lock_timeout
from .manifest import Manifest
from .read_counts import ReadTotals
from .read_path import ReadPath
from .recall import RecallConfig, check_half_life, check_hops, read_with_recall, resolve_recall
from .scope import MemoryScope, check_scope, holds, scoped_metadata
from .store.filters import compile_where
from .store.lexical import LexicalConfig, resolve_lexical
from .types import Hit, Slot, WriteResult
from .validation import (
    MAX_DIM,
    check_bool,
    check_ids,
    check_int,
    check_k,
    check_lookup_ids,
    check_path,
    check_recall_target,
    check_texts,
    check_vectors,
    encode_metadata,
)

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

_DEFAULT_CACHE = CacheConfig()


def _close_all(*closers: Callable[[], None]) -> None:
    """Call every closer in order, even after one raised (its error then propagates), so a
    failing close never keeps the writer lock."""
    with ExitStack() as stack:  # runs its callbacks last pushed first
        for close in reversed(closers):
            stack.callback(close)


class Memory(AnswersFromMemory):
    """An external memory of text slots, searched by meaning.

    Use `Memory.create(path)` for a new one and `Memory.open(path)` for an existing one; both
    are context managers. All methods are safe to call from several threads: searches run
    concurrently, writes one at a time, and no search sees half of a write.
    """

    def __init__(
        self,
        directory: Path,
        files: MemoryFiles,
        cache: CacheConfig | None = None,
        ram_bytes: int | None = None,
        gpu_bytes: int | None = None,
    ) -> None:
        """Use `Memory.create` or `Memory.open`."""
        manifest, table = files.manifest, files.table
        self.path = directory
        self.read_only = files.writer_lock is None
        self._embedder = files.embedder
        self._embedder_checked = False
        self._table = table
        self._writer_lock = files.writer_lock
        self._closed = False
        budgets = resolve_budgets(manifest.budgets, ram_bytes, gpu_bytes)
        self._index = TieredIndex(directory, manifest, table, budgets, self.read_only)
        self._reads = ReadPath(self._index, table, cache, self._embed, self._check_open)
        super().__init__()
        logger.info(
            "opened %s: %d slots, dim %d%s",
            directory,
            table.live_count(),
            manifest.dim,
            " (read-only)" if self.read_only else "",
        )

    @property
    def manifest(self) -> Manifest:
        return self._index.manifest

    @property
    def read_totals(self) -> ReadTotals:
        """The memory reads made since it was opened (`stats()["reads"]`)."""
        return self._reads.reads

    @property
    def embedder(self) -> Embedder:
        """The embedder this memory turns texts into vectors with: what a framework adapter
        hands its framework, so queries embedded there meet the stored vectors."""
        return self._embedder

    @property
    def index(self) -> TieredIndex:
        """The tiered index (advanced): its `growing` shard, `sealed_shards`, `router` and
        `stats()`, for benchmarks and tools that compare against raw FAISS. Read it; every
        change goes through the memory's own methods."""
        return self._index

    # -- opening and closing -----------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        embedder: str | Embedder | None = None,
        *,
        dim: int | None = None,
        cache: CacheConfig | dict | bool | None = _DEFAULT_CACHE,
        index: IndexConfig | dict | None = None,
        ram_bytes: int | None = None,
        gpu_bytes: int | None = None,
        device: str | None = None,
        lock_timeout: float | None = 0.0,
        lexical: LexicalConfig | dict | bool = True,
        ttl: float | None = None,
    ) -> Memory:
        """Create a new memory directory at `path` (which must not exist or be empty).

        Args:
            embedder: sentence-transformers model name or path, or an `Embedder` (to share one
                loaded model between memories); None = all-MiniLM-L6-v2.
            dim: vector dimension; if given, the model is not loaded until text needs embedding
                (useful for memories filled only with precomputed `vectors=`).
            cache: the query cache's `CacheConfig` (or a dict of its fields); None or
                `CacheConfig(enabled=False)` turns it off. It lives in RAM only.
            index: the tiered index's `IndexConfig` (or a dict of its fields): sealing
                threshold, IVF kind, nlist, nprobe...; recorded in the manifest.
            ram_bytes: RAM budget for sealed shards (None = no limit); the rest stay on disk,
                memory-mapped. gpu_bytes: GPU budget (None = 4 GiB if FAISS sees a GPU, else 0).
                Both are recorded in the manifest as the defaults of every later open.
            device: torch device for the embedder ("cpu", "cuda"); None lets it choose.
            lock_timeout: seconds to wait for another writer process; None waits forever.
            lexical: the BM25 index over the slots' words that lexical and hybrid search
                read (`LexicalConfig`, a dict of its fields, True = defaults, False = none:
                dense search only, no indexing cost on writes); recorded in the manifest.
            ttl: seconds each slot lives unless its write says otherwise (None: slots never
                expire); recorded in the manifest. Expired slots are hidden from every read
                at once and removed by `compact()` (`rag_memory.slot_times`).

        Every argument is checked before anything is written: a refused call leaves no files.
        """
        directory = check_path(path)
        cache = resolve_cache(cache)
        config = (
            index
            if isinstance(index, IndexConfig)
            else IndexConfig.from_dict({} if index is None else index)
        )
        budgets = {
            "ram_bytes": check_budget(ram_bytes, "ram_bytes"),
            "gpu_bytes": check_gpu_budget(gpu_bytes),
        }
        check_lock_timeout(lock_timeout)
        lexical_config = resolve_lexical(lexical)
        default_ttl = slot_times.check_ttl_value(ttl)
        if default_ttl == slot_times.NEVER:
            default_ttl = None
        model = embedder if isinstance(embedder, Embedder) else Embedder(embedder, device=device)
        dim = model.dim if dim is None else check_int(dim, "dim", maximum=MAX_DIM)
        check_trainable(config, dim)
        files = create_directory(
            directory, model, dim, config, budgets, lexical_config, lock_timeout, default_ttl
        )
        return cls._from_files(directory, files, cache, ram_bytes, gpu_bytes)

    @classmethod
    def open(
        cls,
        path: str | Path,
        embedder: str | Embedder | None = None,
        *,
        read_only: bool = False,
        cache: CacheConfig | dict | bool | None = _DEFAULT_CACHE,
        ram_bytes: int | None = None,
        gpu_bytes: int | None = None,
        device: str | None = None,
        lock_timeout: float | None = 0.0,
    ) -> Memory:
        """Open an existing memory.

        Args:
            embedder: the memory's own embedder (a name, or an `Embedder` to share a loaded
                model); another one is refused. None loads the one the manifest names.
            read_only: open without the writer lock; many processes may read while one writes,
                and a reader sees the writer's committed slots at its next search.
            cache: the query cache's `CacheConfig`, as for `create`.
            ram_bytes, gpu_bytes: tier budgets for this open; None keeps the ones recorded at
                create (`stats()["budgets"]` says which are in force and where they came from).
            device: torch device for the embedder.
            lock_timeout: seconds to wait if another process has it open for writing (0 = fail
                at once, None = wait forever); ignored when read_only.
        """
        directory = check_path(path)
        cache = resolve_cache(cache)
        if not isinstance(embedder, Embedder):
            check_embedder_name(embedder)
        check_bool(read_only, "read_only")
        check_budget(ram_bytes, "ram_bytes")
        check_gpu_budget(gpu_bytes)
        check_lock_timeout(lock_timeout)
        files = open_directory(directory, embedder, device, read_only, lock_timeout)
        return cls._from_files(directory, files, cache, ram_bytes, gpu_bytes)

    @classmethod
    def _from_files(
        cls,
        directory: Path,
        files: MemoryFiles,
        cache: CacheConfig | None,
        ram_bytes: int | None,
        gpu_bytes: int | None,
    ) -> Memory:
        """The memory over opened files; if building it fails, they are closed again."""
        try:
            return cls(directory, files, cache, ram_bytes, gpu_bytes)
        except BaseException:
            lock = files.writer_lock
            _close_all(files.table.close, *([lock.release] if lock is not None else []))
            raise

    def close(self) -> None:
        """Release files and the writer lock. Every acknowledged write is already on disk.

        Whatever closing the index or the table raises, the other is still closed, the lock
        released and the memory marked closed (then the error propagates)."""
        self._index.stop_maintenance()
        with self._index.lock.write():
            if self._closed:
                return
            self._closed = True
            lock = self._writer_lock
            _close_all(
                self._index.close,
                self._table.close,
                *([lock.release] if lock is not None else []),
            )

    def __enter__(self) -> Memory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        """Slots stored and not expired."""
        self._check_open()
        _, hidden = self._reads.visibility()
        return self._table.live_count() - len(hidden)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._table.live_count()} slots"
        return f"Memory({str(self.path)!r}, {state}, embedder={self.manifest.embedder!r})"

    # -- writes ------------------------------------------------------------------------
    def add(
        self,
        texts: str | list[str],
        ids: str | list[str] | None = None,
        metadata: dict | list[dict] | None = None,
        vectors: Any = None,
        *,
        timestamps: Any = None,
        ttl: Any = None,
        dedupe: str | None = None,
        scope: dict[str, Any] | None = None,
    ) -> WriteResult:
        """Store new slots and return their ids (uuid4 hex when `ids` is None).

        `vectors` are precomputed float32 keys (n, dim) that skip the embedder; rows are
        L2-normalised. An id that is already stored is refused (see `upsert`). When this returns,
        the slots are committed to disk and survive a crash.

        `timestamps`: each slot's write time (finite numbers, one per text or one for all;
        None = the clock now, seconds since the epoch): how an imported history keeps its own
        times. `ttl`: seconds until each slot expires (a number, one per text, math.inf =
        never; None = the memory's default ttl). `dedupe`: "exact" or "near" makes an input
        that repeats a stored slot (or an earlier input) rewrite that slot under its id
        instead of adding a copy (`rag_memory.dedupe`); the result's `merged` says which
        inputs merged into which id. `scope`: metadata fields every slot gets and dedupe
        stays within (what a `MemoryScope` view passes; see `scope()`).
        """
        return self._write(
            texts,
            ids,
            metadata,
            vectors,
            replace=False,
            timestamps=timestamps,
            ttl=ttl,
            dedupe=check_dedupe(dedupe),
            scope=None if scope is None else check_scope(scope),
        )

    def upsert(
        self,
        texts: str | list[str],
        ids: str | list[str],
        metadata: dict | list[dict] | None = None,
        vectors: Any = None,
        *,
        timestamps: Any = None,
        ttl: Any = None,
        scope: dict[str, Any] | None = None,
    ) -> WriteResult:
        """Add or replace slots by id; a replaced slot gets a new address (the old one is
        retired). `timestamps`, `ttl` and `scope` as for `add`; with a scope, an id stored
        outside it is refused."""
        if ids is None:
            raise InvalidInputError("upsert needs ids")
        return self._write(
            texts,
            ids,
            metadata,
            vectors,
            replace=True,
            timestamps=timestamps,
            ttl=ttl,
            scope=None if scope is None else check_scope(scope),
        )

    def remember(
        self,
        text: str,
        role: str = "user",
        metadata: dict | None = None,
        *,
        timestamp: float | None = None,
        ttl: Any = None,
        dedupe: str | None = None,
        scope: dict[str, Any] | None = None,
    ) -> str:
        """Store one turn of a conversation (or any note the model keeps while it works),
        its `role` in the metadata (`ROLE_KEY`, "role"), and return its id: `add` for one
        text."""
        if not isinstance(text, str):
            raise InvalidInputError(f"remember stores one text, got {type(text).__name__}")
        if not isinstance(role, str) or not role:
            raise InvalidInputError(f"role must be a non-empty string, got {role!r}")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInputError(f"metadata must be a dict, got {type(metadata).__name__}")
        result = self.add(
            [text],
            metadata={**(metadata or {}), ROLE_KEY: role},
            timestamps=timestamp,
            ttl=ttl,
            dedupe=dedupe,
            scope=scope,
        )
        return result[0]

    def scope(self, fields: dict[str, Any] | None = None, **more: Any) -> MemoryScope:
        """A view of the slots whose metadata holds `fields` (e.g. a user or a session): its
        writes carry those fields and its reads search only those slots; see
        `rag_memory.scope.MemoryScope`."""
        self._check_open()
        return MemoryScope(self, check_scope({**(fields or {}), **more}))

    def delete(self, ids: str | list[str], *, missing_ok: bool = False) -> None:
        """Delete slots by id; if any id is unknown (or expired), nothing is deleted, unless
        `missing_ok`, which deletes those stored and skips the rest (checked under the write
        lock, so no other thread's delete in between makes the call fail)."""
        self._check_writable()
        ids = list(dict.fromkeys(check_lookup_ids(ids)))
        check_bool(missing_ok, "missing_ok")
        with self._index.lock.write():
            self._check_open()
            now = slot_times.now()
            if missing_ok:
                stored = self._table.contains(ids, now)
                ids = [i for i, found in zip(ids, stored, strict=True) if found]
                if not ids:
                    return
            self._forget(self._table.tombstone(ids, now))

    def _forget(self, addrs: np.ndarray) -> None:
        """Under the write lock, after the table tombstoned `addrs`: the index and caches."""
        none = np.empty(0, np.int64)
        no_vectors = np.empty((0, self.manifest.dim), np.float32)
        self._index.apply_write(none, no_vectors, removed=addrs)
        self._reads.after_write(addrs, none, no_vectors, [])

    def _write(
        self,
        texts: Any,
        ids: Any,
        metadata: Any,
        vectors: Any,
        replace: bool,
        *,
        timestamps: Any = None,
        ttl: Any = None,
        dedupe: str | None = None,
        scope: dict[str, Any] | None = None,
        generated: bool = False,
    ) -> WriteResult:
        """Every write: check, embed, dedupe (under the write lock, against what is stored),
        commit, update the index and caches. `scope`: metadata fields every slot carries and
        dedupe stays within; `generated`: slots the model wrote (dedupe only among those, so
        a generated slot never rewrites a user's)."""
        self._check_writable()
        texts = check_texts(texts)
        ids = check_ids(ids, len(texts))
        meta = encode_metadata(scoped_metadata(metadata, len(texts), scope), len(texts))
        written = slot_times.check_timestamps(timestamps, len(texts))
        ttls = slot_times.check_ttl(ttl, len(texts))
        if vectors is None:
            vecs = self._embed(texts)
        else:
            vecs = check_vectors(vectors, self.manifest.dim, len(texts))
        with self._index.lock.write():
            self._check_open()
            now = slot_times.now()
            if scope is not None and replace:
                self._check_in_scope(ids, scope, now)
            times = written or [now] * len(texts)
            dedupe_scope = {**(scope or {}), **({GENERATED_KEY: True} if generated else {})}
            plan = self._plan_dedupe(dedupe, ids, texts, vecs, dedupe_scope or None, now)
            w = plan.write
            rows = [texts[i] for i in w], [meta[i] for i in w], vecs[w], [times[i] for i in w]
            expires = slot_times.expiry_times(rows[3], [ttls[i] for i in w], self.manifest.ttl)
            addrs, replaced = self._table.write(
                plan.write_ids,
                rows[0],
                rows[1],
                rows[2],
                replace or plan.rewrite,
                rows[3],
                expires,
                now,
            )
            self._index.apply_write(addrs, rows[2], removed=replaced)
            self._reads.after_write(
                replaced,
                addrs,
                rows[2],
                list(zip(plan.write_ids, rows[0], rows[1], rows[3], strict=True)),
                expires,
            )
        # heavy work outside the lock; a brief swap inside
        if self._index.seal_when_due():
            self._reads.after_seal()
        return WriteResult(plan.ids, plan.merged)

    def _check_in_scope(self, ids: list[str], scope: dict[str, Any], now: float) -> None:
        """An upsert within a scope may replace only that scope's slots."""
        present = [i for i, found in zip(ids, self._table.contains(ids, now), strict=True) if found]
        elsewhere = [s.id for s in self._table.get(present, now) if not holds(s.metadata, scope)]
        if elsewhere:
            raise InvalidInputError(
                f"ids stored outside the scope {scope} cannot be upserted within it: "
                f"{elsewhere[:5]}"
            )

    def _plan_dedupe(
        self,
        mode: str | None,
        ids: list[str],
        texts: list[str],
        vectors: np.ndarray,
        scope: dict[str, Any] | None,
        now: float,
    ) -> DedupePlan:
        """Under the write lock: which inputs repeat a stored slot (in `scope`) or each other."""
        where = None if scope is None else compile_where(scope)

        def exact(keys: list[int]) -> dict[int, list[Twin]]:
            found: dict[int, list[Twin]] = {}
            for _, slot_id, text, key in self._table.exact_twins(keys, where, now):
                found.setdefault(key, []).append((slot_id, text))
            return found

        def near(queries: np.ndarray) -> list[list[tuple[float, Twin]]]:
            hits = self._reads.nearest(queries, NEAR_CANDIDATES, where, now)
            return [[(h.score, (h.id, h.text)) for h in row] for row in hits]

        return plan_dedupe(mode, ids, texts, vectors, exact, near)

    # -- maintenance -------------------------------------------------------------------
    def compact(self) -> dict[str, int]:
        """Retire expired slots, seal the growing shard, rewrite sealed shards without their
        tombstones, and merge the lexical index's segments (dropping what deletes left in
        them). The counts say what was done (`expired`: slots retired)."""
        self._check_writable()
        with self._index.lock.write():
            self._check_open()
            expired = self._table.retire_expired(slot_times.now())
            if len(expired):
                self._forget(expired)
            self._reads.refresh_expiry()
        done = self._index.compact()
        with self._index.lock.write():
            self._table.optimize_lexical()
        self._reads.after_seal()
        return {**done, "expired": len(expired)}

    def reindex(self, lexical: LexicalConfig | dict | None = None) -> None:
        """Build the lexical index again from the live slots (as `lexical` says, else as the
        manifest does, else the defaults) and record its settings in the manifest: how a
        memory made with lexical=False gains one, or one changes its tokenizer."""
        self._check_writable()
        config = (
            resolve_lexical(lexical)
            if lexical is not None
            else (self.manifest.lexical_config() or LexicalConfig())
        )
        if config is None:
            raise InvalidInputError(
                f"reindex builds a lexical index: lexical must be a LexicalConfig, a dict or "
                f"None (the manifest's settings), got {lexical!r}"
            )
        with self._index.lock.write():
            self._check_open()
            self._table.build_lexical(config)
            self._index.record_lexical(config.to_dict())
            if self._reads.cache is not None:
                self._reads.cache.clear(self._index.version)

    def rebalance(self) -> dict[int, str]:
        """Move sealed shards between GPU, RAM and disk by heat within the budgets now (it
        also runs by itself every `IndexConfig.rebalance_every` queries). Returns the moves."""
        self._check_open()
        return self._index.rebalance()

    # -- reads -------------------------------------------------------------------------
    def get(self, ids: str | list[str]) -> list[Slot]:
        """The stored slots for `ids`, in order; UnknownIdError if any is not stored (or has
        expired)."""
        self._check_open()
        return self._table.get(check_lookup_ids(ids), slot_times.now())

    def ids(self, where: dict | None = None) -> list[str]:
        """The ids of the stored (unexpired) slots whose metadata passes `where` (the grammar
        of `search`; every slot when None), in write order: how a caller deletes or reads
        by metadata (a document's chunks) without a query."""
        self._check_open()
        where_sql = None if where is None else compile_where(where)
        return self._table.matching_ids(where_sql, slot_times.now())

    def vectors_of(self, hits: list[Hit]) -> tuple[list[Hit], np.ndarray]:
        """(the hits still stored, their stored float32 unit vectors), for re-ranking hits
        by their keys (maximal marginal relevance) without embedding their texts again."""
        self._check_open()
        if not isinstance(hits, list) or not all(isinstance(h, Hit) for h in hits):
            raise InvalidInputError("vectors_of needs a list of Hits")
        if not hits:
            return [], np.empty((0, self.manifest.dim), np.float32)
        return self._reads.vectors_of(hits)

    def contains(self, ids: str | list[str]) -> list[bool]:
        """Whether each of `ids` is stored, in order (one query; unknown ids are not an error)."""
        self._check_open()
        return self._table.contains(check_lookup_ids(ids), slot_times.now())

    @overload
    def search(
        self,
        query: str,
        k: int = 10,
        where: dict | None = None,
        *,
        cache: bool = True,
        nprobe: int | None = None,
        refine_factor: int | None = None,
        recall_target: float | None = None,
        mode: str | None = None,
        hybrid: HybridConfig | dict | None = None,
        recency_half_life: float | None = None,
        hops: int = 1,
        recall: RecallConfig | dict | None = None,
        query_vectors: Any = None,
    ) -> list[Hit]: ...

    @overload
    def search(
        self,
        query: list[str] | tuple[str, ...],
        k: int = 10,
        where: dict | None = None,
        *,
        cache: bool = True,
        nprobe: int | None = None,
        refine_factor: int | None = None,
        recall_target: float | None = None,
        mode: str | None = None,
        hybrid: HybridConfig | dict | None = None,
        recency_half_life: float | None = None,
        hops: int = 1,
        recall: RecallConfig | dict | None = None,
        query_vectors: Any = None,
    ) -> list[list[Hit]]: ...

    @overload
    def search(
        self,
        query: np.ndarray,
        k: int = 10,
        where: dict | None = None,
        *,
        cache: bool = True,
        nprobe: int | None = None,
        refine_factor: int | None = None,
        recall_target: float | None = None,
        mode: str | None = None,
        hybrid: HybridConfig | dict | None = None,
        recency_half_life: float | None = None,
        hops: int = 1,
        recall: RecallConfig | dict | None = None,
        query_vectors: Any = None,
    ) -> list[Hit] | list[list[Hit]]: ...

    def search(
        self,
        query: str | list[str] | tuple[str, ...] | np.ndarray,
        k: int = 10,
        where: dict | None = None,
        *,
        cache: bool = True,
        nprobe: int | None = None,
        refine_factor: int | None = None,
        recall_target: float | None = None,
        mode: str | None = None,
        hybrid: HybridConfig | dict | None = None,
        recency_half_life: float | None = None,
        hops: int = 1,
        recall: RecallConfig | dict | None = None,
        query_vectors: Any = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Top-k slots for a query: by meaning (dense), by words (lexical, BM25) or both fused.

        `query` is a string (-> list[Hit]), a list of strings or a 2-D float32 array of query
        vectors (-> list[list[Hit]]), or a 1-D vector (-> list[Hit]). `mode` is "dense"
        (cosine of embeddings), "lexical" (BM25 over the lexical index) or "hybrid" (both
        legs fused as `hybrid` says: a `HybridConfig` or a dict of its fields, i.e. fusion
        "convex" or "rrf", alpha, rrf_k, fetch_k); None is hybrid for text queries on a
        memory with a lexical index (measured the better default, README "Hybrid
        retrieval"), dense otherwise, and vector queries are always dense. `where` filters
        on metadata inside every leg (a FAISS IDSelector, the FTS5 statement), so k hits come
        back whenever k matching slots exist. `cache=False` bypasses the query cache
        (neither read nor filled); hits the cache answered have `Hit.cached` set. `nprobe`
        overrides the partitions probed in sealed shards for this call (more = slower,
        closer to exact; `stats()["index"]` shows the default and the recall curve it was
        read from), `recall_target` (0-1) probes the fewest partitions whose estimated
        recall@10 reaches it instead, and `refine_factor` sets the IVF-PQ candidates
        re-ranked per hit; such a call bypasses the cache, whose entries hold results of
        the memory's own settings.

        `recency_half_life` (in the unit of the write times; None = no recency) favours
        recent slots among the relevant ones, and `hops` > 1 reads recursively, the next
        hop's query formed from the question and what the previous hop read; `recall` (a
        `RecallConfig` or a dict of its fields) holds the finer settings. See
        `rag_memory.recall` for the formula; `Hit.hop` and `Hit.relevance` say what each
        read found. `hops=1` without a half-life is the plain search.

        `query_vectors`: the text queries' embeddings by this memory's embedder, (n, dim), for
        a caller that already made them (a sharded memory embeds a query once for all its
        shards); the embedder is then not called. Plain searches only (hops 1, no half-life).
        """
        self._check_open()
        k = check_k(k)
        mode = check_mode(mode)
        hybrid_config = resolve_hybrid(hybrid)
        half_life = check_half_life(recency_half_life)
        hops = check_hops(hops, k)
        recall_config = resolve_recall(recall)
        where_sql = None if where is None else compile_where(where)
        if not isinstance(cache, bool):
            raise InvalidInputError(f"cache must be True or False, got {cache!r}")
        overrides = SearchKnobs()
        if nprobe is not None:
            overrides["nprobe"] = check_k(nprobe, "nprobe")
        if refine_factor is not None:
            overrides["refine_factor"] = check_k(refine_factor, "refine_factor")
        if recall_target is not None:
            overrides["recall_target"] = check_recall_target(recall_target)

        if half_life is None and hops == 1:
            return self._reads.search(
                query, k, where, where_sql, cache, overrides, mode, hybrid_config, query_vectors
            )
        if query_vectors is not None:
            raise InvalidInputError(
                "query_vectors serve plain searches only: a multi-hop or recency-aware read "
                "embeds queries of its own"
            )

        def plain(q: Any, n: int, search_mode: str | None = mode) -> Any:
            return self._reads.search(
                q, n, where, where_sql, cache, overrides, search_mode, hybrid_config
            )

        single, queries = self._reads.split_queries(query)
        results = [
            read_with_recall(
                q,
                k,
                search=plain,
                dense_search=lambda v, n: plain(v, n, "dense"),
                stored_vectors=self._reads.vectors_of,
                query_vector=lambda text: self._reads.encode([text])[0],
                half_life=half_life,
                hops=hops,
                config=recall_config,
            )
            for q in queries
        ]
        return results[0] if single else results

    def embed(self, texts: str | list[str]) -> np.ndarray:
        """The (n, dim) float32 unit vectors the memory's own embedder gives `texts` (through
        the query cache's embedding layer): the keys a text search compares, for callers that
        store or compare vectors themselves (the server's OpenAI-compatible /v1/embeddings)."""
        self._check_open()
        return self._reads.encode(check_texts(texts))

    def iter_vectors(self, batch: int = 65_536) -> Iterator[tuple[list[Slot], np.ndarray]]:
        """Yield (slots, their float32 unit vectors) for every live slot, in chunks of at most
        `batch`, from every shard (e.g. to build an exact-search anchor without re-embedding).
        A snapshot: it holds the read lock, so writes wait until the iteration ends. The
        arguments are checked at the call, not at the first `next()`."""
        self._check_open()
        return self._reads.iter_slots(check_k(batch, "batch"))

    def stats(self) -> dict[str, Any]:
        """Counts, shards per tier, bytes, the memory-wide version number, and the generator's
        slot KV cache figures once `generate` (or `generator`) has created one."""
        self._check_open()
        expiry = self._expiry_stats()  # before the read lock: it may refresh the hidden set
        with self._index.lock.read():
            return {
                "path": str(self.path),
                "slots": self._table.live_count(),
                "version": self._table.version(),
                "embedder": self.manifest.embedder,
                "dim": self.manifest.dim,
                "metric": self.manifest.metric,
                "read_only": self.read_only,
                **self._index.stats(),
                "lexical": self._lexical_stats(),
                "expiry": expiry,
                "reads": self._reads.reads.stats(),
                "disk_bytes": _directory_bytes(self.path),
                "cache": self._reads.cache.stats() if self._reads.cache else {"enabled": False},
                **({"generator": self._generator.stats()} if self._generator else {}),
            }

    # -- internals ---------------------------------------------------------------------
    def _expiry_stats(self) -> dict[str, Any]:
        _, hidden = self._reads.visibility()
        return {"default_ttl": self.manifest.ttl, "expired_not_retired": len(hidden)}

    def _lexical_stats(self) -> dict[str, Any]:
        config = self._table.lexical  # the table holds the manifest's, validated at open
        return {
            "enabled": config is not None,
            "ready": self._table.has_lexical(),
            **({} if config is None else config.to_dict()),
        }

    def _check_open(self) -> None:
        if self._closed:
            raise MemoryClosedError(f"{self.path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyError(f"{self.path} was opened read_only=True")

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not self._embedder_checked:
            self._embedder.check_dim(self.manifest.dim)
            self._embedder_checked = True
        return self._embedder.encode(texts)


def _directory_bytes(directory: Path) -> int:
    """Bytes of the files under `directory`; one a writer deletes meanwhile counts zero."""
    total = 0
    for path in directory.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            continue
    return total
