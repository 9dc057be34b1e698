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

from .answering import AnswersFromMemory
from .cache import CacheConfig
from .cache import resolve as resolve_cache
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
from .index.tiered import TieredIndex
from .locks import check_lock_timeout
from .manifest import Manifest
from .read_path import ReadPath
from .store.filters import compile_where
from .store.lexical import LexicalConfig, resolve_lexical
from .types import Hit, Slot
from .validation import (
    MAX_DIM,
    check_bool,
    check_ids,
    check_int,
    check_k,
    check_lookup_ids,
    check_path,
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
        model = embedder if isinstance(embedder, Embedder) else Embedder(embedder, device=device)
        dim = model.dim if dim is None else check_int(dim, "dim", maximum=MAX_DIM)
        check_trainable(config, dim)
        files = create_directory(
            directory, model, dim, config, budgets, lexical_config, lock_timeout
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
        none = np.empty(0, np.int64)
        no_vectors = np.empty((0, self.manifest.dim), np.float32)
        with self._index.lock.write():
            self._check_open()
            addrs = self._table.tombstone(ids)
            self._index.apply_write(none, no_vectors, removed=addrs)
            self._reads.after_write(addrs, none, no_vectors, [])

    def _write(self, texts: Any, ids: Any, metadata: Any, vectors: Any, replace: bool) -> list[str]:
        self._check_writable()
        texts = check_texts(texts)
        ids = check_ids(ids, len(texts))
        meta = encode_metadata(metadata, len(texts))
        if vectors is None:
            vecs = self._embed(texts)
        else:
            vecs = check_vectors(vectors, self.manifest.dim, len(texts))
        with self._index.lock.write():
            self._check_open()
            addrs, replaced = self._table.write(ids, texts, meta, vecs, replace)
            self._index.apply_write(addrs, vecs, removed=replaced)
            self._reads.after_write(replaced, addrs, vecs, list(zip(ids, texts, meta, strict=True)))
        # heavy work outside the lock; a brief swap inside
        if self._index.seal_when_due():
            self._reads.after_seal()
        return ids

    # -- maintenance -------------------------------------------------------------------
    def compact(self) -> dict[str, int]:
        """Seal the growing shard, rewrite sealed shards without their tombstones, and merge
        the lexical index's segments (dropping what deletes left in them)."""
        self._check_writable()
        done = self._index.compact()
        with self._index.lock.write():
            self._table.optimize_lexical()
        self._reads.after_seal()
        return done

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
        """The stored slots for `ids`, in order; UnknownIdError if any is not stored."""
        self._check_open()
        return self._table.get(check_lookup_ids(ids))

    def contains(self, ids: str | list[str]) -> list[bool]:
        """Whether each of `ids` is stored, in order (one query; unknown ids are not an error)."""
        self._check_open()
        return self._table.contains(check_lookup_ids(ids))

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
        mode: str | None = None,
        hybrid: HybridConfig | dict | None = None,
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
        mode: str | None = None,
        hybrid: HybridConfig | dict | None = None,
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
        mode: str | None = None,
        hybrid: HybridConfig | dict | None = None,
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
        mode: str | None = None,
        hybrid: HybridConfig | dict | None = None,
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
        closer to exact), and `refine_factor` the IVF-PQ candidates re-ranked per hit; such a
        call bypasses the cache, whose entries hold results of the memory's own settings.
        """
        self._check_open()
        k = check_k(k)
        mode = check_mode(mode)
        hybrid_config = resolve_hybrid(hybrid)
        where_sql = None if where is None else compile_where(where)
        if not isinstance(cache, bool):
            raise InvalidInputError(f"cache must be True or False, got {cache!r}")
        overrides = {
            name: check_k(value, name)
            for name, value in (("nprobe", nprobe), ("refine_factor", refine_factor))
            if value is not None
        }
        return self._reads.search(query, k, where, where_sql, cache, overrides, mode, hybrid_config)

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
                "disk_bytes": _directory_bytes(self.path),
                "cache": self._reads.cache.stats() if self._reads.cache else {"enabled": False},
                **({"generator": self._generator.stats()} if self._generator else {}),
            }

    # -- internals ---------------------------------------------------------------------
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
