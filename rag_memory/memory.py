"""`Memory`, the facade: opens a memory directory and wires the embedder, the slot table and
the shards together. It holds no algorithm of its own; each part lives in its own module."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from .cache import CacheConfig, QueryCache, group_key
from .cache import resolve as resolve_cache
from .embed import Embedder
from .errors import (
    CorruptFileError,
    EmbedderMismatchError,
    GenerationInputError,
    InvalidInputError,
    MemoryClosedError,
    MemoryExistsError,
    ReadOnlyError,
)
from .generate import Answer, GeneratorConfig
from .generate.stream import PieceStream, drain, with_retrieval
from .index import maintenance
from .index.config import IndexConfig
from .index.tiered import SHARDS_DIR, TieredIndex
from .locks import ReadWriteLock, WriterLock
from .manifest import Manifest, read_manifest, write_manifest
from .store.filters import compile_where
from .store.slot_table import TABLE_NAME, SlotTable
from .types import Hit, Slot
from .validation import (
    as_list,
    check_ids,
    check_k,
    check_lookup_ids,
    check_texts,
    check_vectors,
    encode_metadata,
    is_text_batch,
)

if TYPE_CHECKING:
    from .generate.generator import Generator

logger = logging.getLogger(__name__)

_DEFAULT_CACHE = CacheConfig()


class Memory:
    """An external memory of text slots, searched by meaning.

    Use `Memory.create(path)` for a new one and `Memory.open(path)` for an existing one; both
    are context managers. All methods are safe to call from several threads: searches run
    concurrently, writes one at a time, and no search sees half of a write.
    """

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        embedder: Embedder,
        table: SlotTable,
        writer_lock: WriterLock | None,
        cache: CacheConfig | None = None,
        ram_bytes: int | None = None,
        gpu_bytes: int | None = None,
    ) -> None:
        self.path = directory
        self.read_only = writer_lock is None
        self._embedder = embedder
        self._embedder_checked = False
        self._table = table
        self._writer_lock = writer_lock
        self._rw = ReadWriteLock()
        self._closed = False
        self._budgets = (ram_bytes, gpu_bytes)
        self._index = self._open_index(manifest)
        self._cache = None if cache is None else QueryCache(cache, manifest.dim, self._version)
        self._generator: Generator | None = None
        self._generator_lock = threading.Lock()
        live = table.live_count()
        logger.info(
            "opened %s: %d slots, dim %d%s",
            directory,
            live,
            manifest.dim,
            " (read-only)" if self.read_only else "",
        )

    def _open_index(self, manifest: Manifest) -> TieredIndex:
        """The tiered index with its growing shard loaded; a writer first repairs what an
        interrupted seal or compaction left behind."""
        index = TieredIndex(
            self.path, manifest, self._table, self._rw, *self._budgets, read_only=self.read_only
        )
        if not self.read_only:
            maintenance.reconcile(index, self.path / SHARDS_DIR)
        addrs, vectors, self._version = self._table.growing_vectors()
        index.load_growing(addrs, vectors)
        live = self._table.live_count()
        if live != index.live_count():
            index.close()
            raise CorruptFileError(
                self.path / TABLE_NAME,
                f"slot count {live} does not match the {index.live_count()} vectors stored",
            )
        return index

    @property
    def manifest(self) -> Manifest:
        return self._index.manifest

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
            device: torch device for the embedder ("cpu", "cuda"); None lets it choose.
            lock_timeout: seconds to wait for another writer process; None waits forever.
        """
        directory = Path(path)
        cache = resolve_cache(cache)
        config = index if isinstance(index, IndexConfig) else IndexConfig.from_dict(index or {})
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise MemoryExistsError(
                f"{directory} already exists and is not empty; use Memory.open to open a memory"
            )
        model = embedder if isinstance(embedder, Embedder) else Embedder(embedder, device=device)
        if dim is None:
            dim = model.dim
        elif isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise InvalidInputError(f"dim must be a positive integer, got {dim!r}")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SHARDS_DIR).mkdir(exist_ok=True)
        lock = WriterLock(directory, lock_timeout)
        table = SlotTable.create(directory / TABLE_NAME, dim)
        manifest = Manifest(embedder=model.name, dim=dim, index=config.to_dict())
        write_manifest(directory, manifest)  # last: its presence marks a complete memory
        return cls(directory, manifest, model, table, lock, cache, ram_bytes, gpu_bytes)

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
            ram_bytes, gpu_bytes: tier budgets, as for `create` (they may differ per open).
            device: torch device for the embedder.
            lock_timeout: seconds to wait if another process has it open for writing (0 = fail
                at once, None = wait forever); ignored when read_only.
        """
        directory = Path(path)
        cache = resolve_cache(cache)
        manifest = read_manifest(directory)
        name = embedder.name if isinstance(embedder, Embedder) else embedder
        if name is not None and name != manifest.embedder:
            raise EmbedderMismatchError(
                f"{directory} was built with embedder {manifest.embedder!r}, not {name!r}"
            )
        model = (
            embedder
            if isinstance(embedder, Embedder)
            else Embedder(manifest.embedder, device=device)
        )
        lock = None if read_only else WriterLock(directory, lock_timeout)
        try:
            table = SlotTable(directory / TABLE_NAME, manifest.dim, read_only=read_only)
            return cls(directory, manifest, model, table, lock, cache, ram_bytes, gpu_bytes)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    def close(self) -> None:
        """Release files and the writer lock. Every acknowledged write is already on disk."""
        with self._rw.write():
            if self._closed:
                return
            self._closed = True
            self._index.close()
            self._table.close()
            if self._writer_lock is not None:
                self._writer_lock.release()

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
        self._check_open()
        return self._table.live_count()

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
    ) -> list[str]:
        """Store new slots and return their ids (uuid4 hex when `ids` is None).

        `vectors` are precomputed float32 keys (n, dim) that skip the embedder; rows are
        L2-normalised. An id that is already stored is refused (see `upsert`). When this returns,
        the slots are committed to disk and survive a crash.
        """
        return self._write(texts, ids, metadata, vectors, replace=False)

    def upsert(
        self,
        texts: str | list[str],
        ids: str | list[str],
        metadata: dict | list[dict] | None = None,
        vectors: Any = None,
    ) -> list[str]:
        """Add or replace slots by id; a replaced slot gets a new address (the old one is
        retired)."""
        if ids is None:
            raise InvalidInputError("upsert needs ids")
        return self._write(texts, ids, metadata, vectors, replace=True)

    def delete(self, ids: str | list[str]) -> None:
        """Delete slots by id; if any id is unknown, nothing is deleted."""
        self._check_writable()
        ids = list(dict.fromkeys(check_lookup_ids(ids)))
        with self._rw.write():
            self._check_open()
            addrs = self._table.tombstone(ids)
            self._index.remove(addrs)
            self._cache_write(
                addrs, np.empty(0, np.int64), np.empty((0, self.manifest.dim), np.float32), []
            )

    def _write(self, texts: Any, ids: Any, metadata: Any, vectors: Any, replace: bool) -> list[str]:
        self._check_writable()
        texts = check_texts(texts)
        ids = check_ids(ids, len(texts))
        meta = encode_metadata(metadata, len(texts))
        if vectors is None:
            vecs = self._embed(texts)
        else:
            vecs = check_vectors(vectors, self.manifest.dim, len(texts))
        with self._rw.write():
            self._check_open()
            addrs, replaced = self._table.write(ids, texts, meta, vecs, replace)
            self._index.remove(replaced)
            self._index.add(addrs, vecs)
            self._cache_write(replaced, addrs, vecs, list(zip(ids, texts, meta, strict=True)))
        if len(self._index.growing) >= self._index.config.seal_threshold:
            if maintenance.seal(self._index):  # heavy work outside the lock; a brief swap inside
                self._cache_reset()
        return ids

    # -- maintenance -------------------------------------------------------------------
    def compact(self) -> dict[str, int]:
        """Seal the growing shard and rewrite sealed shards without their tombstones."""
        self._check_writable()
        done = maintenance.compact(self._index)
        self._cache_reset()
        return done

    def rebalance(self) -> dict[int, str]:
        """Move sealed shards between GPU, RAM and disk by heat within the budgets now (it
        also runs by itself every `IndexConfig.rebalance_every` queries). Returns the moves."""
        self._check_open()
        return self._index.rebalance()

    # -- reads -------------------------------------------------------------------------
    def get(self, ids: str | list[str]) -> list[Slot]:
        """The stored slots for `ids`, in order; UnknownIdError if any is not stored."""
        self._check_open()
        return self._table.get(check_lookup_ids(ids))

    def contains(self, ids: str | list[str]) -> list[bool]:
        """Whether each of `ids` is stored, in order (one query; unknown ids are not an error)."""
        self._check_open()
        return self._table.contains(check_lookup_ids(ids))

    def search(
        self,
        query: Any,
        k: int = 10,
        where: dict | None = None,
        *,
        cache: bool = True,
        nprobe: int | None = None,
        refine_factor: int | None = None,
    ) -> Any:
        """Top-k slots by cosine similarity.

        `query` is a string (-> list[Hit]), a list of strings or a 2-D float32 array of query
        vectors (-> list[list[Hit]]), or a 1-D vector (-> list[Hit]). `where` filters on
        metadata inside the search (a FAISS IDSelector), so k hits come back whenever k
        matching slots exist. `cache=False` bypasses the query cache (neither read nor filled);
        hits the cache answered have `Hit.cached` set. `nprobe` overrides the partitions
        probed in sealed shards for this call (more = slower, closer to exact), and
        `refine_factor` the IVF-PQ candidates re-ranked per hit; such a call bypasses the cache,
        whose entries hold results of the memory's own settings.
        """
        self._check_open()
        k = check_k(k)
        where_sql = None if where is None else compile_where(where)
        if not isinstance(cache, bool):
            raise InvalidInputError(f"cache must be True or False, got {cache!r}")
        overrides = {
            name: check_k(value, name)
            for name, value in (("nprobe", nprobe), ("refine_factor", refine_factor))
            if value is not None
        }
        qcache = self._cache if cache and not overrides else None
        single, queries = self._query_vectors(query, qcache)
        self._catch_up()
        # -- cache hook: answer what the cache holds, search only the rest --
        key = group_key(k, where)
        found = qcache.lookup(queries, key) if qcache else [None] * len(queries)
        todo = [i for i, hits in enumerate(found) if hits is None]
        if todo:
            missed = queries if len(todo) == len(queries) else queries[todo]
            with self._rw.read():
                self._check_open()
                fresh = self._search_index(missed, k, where_sql, overrides)
                if qcache:  # under the read lock: no write between the search and the store
                    qcache.store(missed, key, where_sql, fresh, self._version)
            for i, hits in zip(todo, fresh, strict=True):
                found[i] = hits
            if self._index.needs_rebalance() and not self._index.maintenance.locked():
                threading.Thread(
                    target=self._index.rebalance, daemon=True, name="rag-memory-rebalance"
                ).start()
        return found[0] if single else found

    def _search_index(
        self,
        queries: np.ndarray,
        k: int,
        where_sql: tuple[str, list[Any]] | None,
        overrides: dict[str, int] | None = None,
    ) -> list[list[Hit]]:
        allowed = None
        if where_sql is not None:
            allowed = self._table.matching_addrs(*where_sql)
            if not len(allowed):
                return [[] for _ in range(len(queries))]
        scores, addrs = self._index.search(queries, k, allowed, **(overrides or {}))
        return self._hydrate(scores, addrs)

    # -- generation --------------------------------------------------------------------
    @property
    def generator(self) -> Generator:
        """The `Generator` that `generate` uses, created with default settings on first use
        (the model loads at the first answer). Assign a `Generator` to share one loaded model
        and slot KV cache between memories, or a `GeneratorConfig` for other settings."""
        with self._generator_lock:
            if self._generator is None:
                from .generate.generator import Generator

                self._generator = Generator()
            return self._generator

    @generator.setter
    def generator(self, value: Generator | GeneratorConfig) -> None:
        from .generate.generator import Generator

        if isinstance(value, GeneratorConfig):
            value = Generator(value)
        elif not isinstance(value, Generator):
            raise InvalidInputError(
                f"generator must be a Generator or a GeneratorConfig, got {type(value).__name__}"
            )
        with self._generator_lock:
            self._generator = value

    def generate(
        self,
        question: str,
        k: int = 5,
        fusion: str | None = None,
        where: dict | None = None,
        **options: Any,
    ) -> Answer:
        """Answer `question` from the top-k slots (k = 0: closed book, no search).

        Weights are softmax(score / temperature) of the hits' scores; the slot KV cache is
        keyed by slot address, so a slot upserted since is encoded afresh. `fusion` is
        "xattn", "mixture" or "concat" (None: the generator's default); `options` go to
        `Generator.answer` (max_new_tokens, stop). The Answer's `hits` are the slots read and
        its timings include `retrieval_s`.
        """
        return drain(self.generate_stream(question, k, fusion, where, **options))

    def generate_stream(
        self,
        question: str,
        k: int = 5,
        fusion: str | None = None,
        where: dict | None = None,
        **options: Any,
    ) -> PieceStream:
        """As `generate`, yielding the answer's text as it is decoded; the iterator's return
        value (`StopIteration.value`) is the Answer. Searches and checks input at the call."""
        self._check_open()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise GenerationInputError(f"k must be an int >= 0 (0 = closed book), got {k!r}")
        start = time.perf_counter()
        hits = self.search(question, k=int(k), where=where) if k else []
        retrieval_s = time.perf_counter() - start
        pieces = self.generator.stream(
            question,
            [h.text for h in hits],
            fusion=fusion,
            scores=[h.score for h in hits],
            slot_keys=[str(h.address) for h in hits],
            **options,
        )
        return with_retrieval(pieces, hits, retrieval_s)

    def iter_vectors(self, batch: int = 65_536):  # -> Iterator[tuple[list[Slot], np.ndarray]]
        """Yield (slots, their float32 unit vectors) for every live slot, in chunks, from every
        shard (e.g. to build an exact-search anchor without re-embedding). A snapshot: it
        holds the read lock, so writes wait until the iteration ends."""
        self._check_open()
        with self._rw.read():
            for addrs, vectors in self._index.iter_live_vectors(batch):
                rows = self._table.fetch(addrs.tolist())
                yield (
                    [
                        Slot(rows[a][0], rows[a][1], json.loads(rows[a][2]), a)
                        for a in addrs.tolist()
                    ],
                    vectors,
                )

    def stats(self) -> dict[str, Any]:
        """Counts, shards per tier, bytes, the memory-wide version number, and the generator's
        slot KV cache figures once `generate` (or `generator`) has created one."""
        self._check_open()
        with self._rw.read():
            return {
                "path": str(self.path),
                "slots": self._table.live_count(),
                "version": self._table.version(),
                "embedder": self.manifest.embedder,
                "dim": self.manifest.dim,
                "metric": self.manifest.metric,
                "read_only": self.read_only,
                **self._index.stats(),
                "disk_bytes": sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file()),
                "cache": self._cache.stats() if self._cache else {"enabled": False},
                **({"generator": self._generator.stats()} if self._generator else {}),
            }

    # -- internals ---------------------------------------------------------------------
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

    def _query_vectors(self, query: Any, qcache: QueryCache | None) -> tuple[bool, np.ndarray]:
        """(is a single query, (nq, dim) unit query vectors); texts seen before skip the
        embedder."""
        if isinstance(query, str) or is_text_batch(query):
            texts = check_texts(as_list(query, "query"))
            vectors = qcache.encode(texts, self._embed) if qcache else self._embed(texts)
            return isinstance(query, str), vectors
        if isinstance(query, (list, tuple)) and not query:
            raise InvalidInputError("query is an empty list")
        single = np.ndim(query) == 1
        return single, check_vectors(query, self.manifest.dim, what="query vectors")

    def _catch_up(self) -> None:
        """A read-only reader applies the writer's committed changes before it searches."""
        if (
            not self.read_only
            or self._closed
            or (
                self._table.version() == self._version
                and self._table.generation() == self.manifest.generation
            )
        ):
            return
        with self._rw.write():
            if self._closed:
                return
            if self._table.generation() != self.manifest.generation:
                # the writer sealed or compacted: reopen the shards it now has
                old, self._index = self._index, self._open_index(read_manifest(self.path))
                old.close()
                version = self._version
            else:
                addrs, vectors, version = self._table.growing_vectors(since_version=self._version)
                self._index.remove(self._table.deleted_since(self._version))
                self._index.growing.remove(addrs)  # a slot seen before is never added twice
                self._index.add(addrs, vectors)
                self._version = version
            self._table.rows.clear()  # the writer may have deleted rows cached here
            if self._cache is not None:  # another process wrote: cached results may be stale
                self._cache.clear(version)

    def _cache_write(
        self,
        removed: np.ndarray,
        addrs: np.ndarray,
        vectors: np.ndarray,
        rows: list[tuple[str, str, str]],
    ) -> None:
        """Cache hook, under the write lock after the index changed: patch cached results."""
        if self._cache is None:
            return
        self._version = self._table.version()
        self._cache.apply_write(
            self._version,
            removed,
            addrs,
            vectors,
            rows,
            lambda where, among: set(
                self._table.matching_addrs(*where, among=among.tolist()).tolist()
            ),
        )

    def _cache_reset(self) -> None:
        """Cache hook after a seal or compaction: sealed (IVF) shards answer approximately, so
        results cached while those slots were searched exactly may differ from a fresh search."""
        if self._cache is not None:
            with self._rw.write():
                self._cache.clear(self._version)

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
