"""`ShardedMemory`: one memory sharded over Ray actors, with the methods of `Memory`.

The client (this object) owns what must be decided once: it embeds texts (one embedder, in
this process), routes each write by a stable hash of the id (`layout.shard_of`), sends every
shard its part in parallel and returns when all made theirs durable; it sends a query to all
shards once (`ray.put`) and merges their top-k lists exactly (`merge`); its query cache sits
in front of the shards and is cleared by each of its writes. Each shard is an actor holding
one ordinary member memory (`shard.Shard`): durable, tiered and filtered as one `Memory`.

Patterns: facebookresearch/distributed-faiss (independent index servers, the client places
writes and merges every server's top k), Milvus (segments spread over query nodes, a proxy
that merges), Ray's actors for stateful shards (https://docs.ray.io/en/latest/ray-core/actors.html)
and its fault tolerance (https://docs.ray.io/en/latest/ray-core/fault_tolerance/actors.html).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError

from .. import slot_times
from ..answering import AnswersFromMemory
from ..cache import CacheConfig, QueryCache, group_key
from ..cache import resolve as resolve_cache
from ..embed import Embedder
from ..errors import (
    EmbedderMismatchError,
    IdAlreadyStoredError,
    InvalidInputError,
    MemoryClosedError,
    MemoryExistsError,
    RagMemoryError,
    ReadOnlyError,
    ShardUnavailableError,
    ShardWriteError,
    UnknownIdError,
)
from ..hybrid import DENSE, HYBRID, LEXICAL, HybridConfig, check_mode, resolve_hybrid, resolve_mode
from ..locks import LOCK_NAME, ReadWriteLock, WriterLock, check_lock_timeout
from ..read_counts import ReadCounts, ReadTotals
from ..recall import RecallConfig, check_half_life, check_hops, read_with_recall, resolve_recall
from ..scope import MemoryScope, check_scope, holds, scoped_metadata
from ..store.filters import compile_where
from ..types import Hit, Slot, WriteResult
from ..validation import (
    MAX_DIM,
    as_list,
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
    is_text_batch,
)
from ..wire import error_from_json
from .layout import (
    MAX_SHARDS,
    Member,
    ShardedManifest,
    member_paths,
    read_manifest,
    shard_of,
    write_manifest,
)
from .merge import merge_top_k, split_address
from .runtime import (
    DEFAULT_MAX_RESTARTS,
    DEFAULT_SHARD_CPUS,
    START_TIMEOUT_S,
    actor_options,
    check_resources,
    connect,
)
from .shard import MemberError, Shard

logger = logging.getLogger(__name__)

T = TypeVar("T")
_DEFAULT_CACHE = CacheConfig()
ShardActor = ray.remote(Shard)


def _unwrapped(exc: BaseException, shard: int) -> RagMemoryError:
    """The error a shard's failure is raised as: the member's own RagMemoryError, or
    ShardUnavailableError when the actor (its process, its node) is gone."""
    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    if isinstance(cause, MemberError):
        return error_from_json(cause.record)
    if isinstance(cause, RagMemoryError):
        return cause
    if isinstance(exc, RayActorError):
        return ShardUnavailableError(f"shard {shard} is unavailable: {exc}")
    return ShardUnavailableError(f"shard {shard} failed: {type(exc).__name__}: {exc}")


def _gather(refs: list[Any]) -> list[Any]:
    """Every shard's answer, in shard order; the first failure raised as `_unwrapped` says."""
    out = []
    for shard, ref in enumerate(refs):
        try:
            out.append(ray.get(ref))
        except (RayTaskError, RayActorError) as exc:
            raise _unwrapped(exc, shard) from None
    return out


def _by_shard(ids: list[str], shards: int) -> dict[int, list[int]]:
    """Input positions per shard, in input order."""
    groups: dict[int, list[int]] = {}
    for position, shard in enumerate(shard_of(ids, shards)):
        groups.setdefault(shard, []).append(position)
    return groups


def _pick(values: list[T] | None, positions: list[int]) -> list[T] | None:
    return None if values is None else [values[i] for i in positions]


class ShardedMemory(AnswersFromMemory):
    """A memory sharded over Ray actors: `add`, `upsert`, `delete`, `get`, `contains`,
    `search`, `generate`, `stats`, `len` and `close` as on `Memory`.

    Use `ShardedMemory.create(root, shards=N)` or `ShardedMemory.open(root)`; both are
    context managers. One writer client at a time (a second gets MemoryLockedError); many
    `read_only=True` clients may read beside it.
    """

    def __init__(
        self,
        root: Path,
        manifest: ShardedManifest,
        actors: list[Any],
        embedder: Embedder,
        cache: CacheConfig | None,
        writer_lock: WriterLock | None,
        leave_runtime: bool,
    ) -> None:
        """Use `ShardedMemory.create` or `ShardedMemory.open`."""
        self.path = root
        self.manifest = manifest
        self.read_only = writer_lock is None
        self._actors = actors
        self._embedder = embedder
        self._embedder_checked = False
        self._writer_lock = writer_lock
        self._leave_runtime = leave_runtime
        self._closed = False
        self._version = 0  # bumped by each write of this client: the query cache's epoch
        self._cache = None if cache is None else QueryCache(cache, manifest.dim, 0)
        self._lock = ReadWriteLock()  # no write lands between a search and its cache fill
        self._reads = ReadTotals()
        self._lexical = bool(_gather([a.describe.remote() for a in actors])[0]["lexical"])
        super().__init__()
        logger.info("opened %s: %d shards on Ray", root, manifest.shards)

    @property
    def shards(self) -> int:
        return self.manifest.shards

    @property
    def read_totals(self) -> ReadTotals:
        return self._reads

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    # -- opening and closing -----------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: str | Path,
        shards: int,
        *,
        address: str | None = None,
        embedder: str | Embedder | None = None,
        dim: int | None = None,
        nodes: list[str] | None = None,
        member_root: str | Path | None = None,
        cache: CacheConfig | dict | bool | None = _DEFAULT_CACHE,
        device: str | None = None,
        shard_cpus: float = DEFAULT_SHARD_CPUS,
        shard_gpus: float = 0.0,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        lock_timeout: float | None = 0.0,
        **memory_options: Any,
    ) -> ShardedMemory:
        """Create a sharded memory at `root` (absent or empty) with `shards` members.

        Args:
            address: the Ray runtime (None: this process's, or a new local one; "auto" or
                "ray://host:10001": a cluster).
            embedder, dim, device: as for `Memory.create`; the client embeds, the members
                never load the model.
            nodes: node IPs to pin members to, member i on nodes[i % len(nodes)] (members
                on those nodes' local disks, under `member_root`); None: any node (a shared
                filesystem, or one machine).
            member_root: where members live when not under `root` (a folder every node of
                `nodes` has); None: `root/shard-000`, ...
            shard_cpus, shard_gpus: Ray resources each shard actor holds; max_restarts: how
                often Ray restarts a shard's crashed process (-1: always).
            memory_options: `Memory.create`'s other arguments (index, ram_bytes, gpu_bytes,
                lexical, ttl), the same for every member.
        """
        root = check_path(root)
        shards = check_int(shards, "shards", maximum=MAX_SHARDS)
        cache_config = resolve_cache(cache)
        check_resources(shard_cpus, shard_gpus, max_restarts)
        check_lock_timeout(lock_timeout)
        if "dedupe" in memory_options or "cache" in memory_options:
            raise InvalidInputError("dedupe and member caches are not options of a sharded memory")
        if nodes is not None and (
            not isinstance(nodes, list) or not nodes or not all(isinstance(n, str) for n in nodes)
        ):
            raise InvalidInputError(f"nodes must be a non-empty list of node IPs, got {nodes!r}")
        if nodes is not None and member_root is None:
            raise InvalidInputError("members pinned to nodes need a member_root on those nodes")
        if root.exists() and (
            not root.is_dir() or any(p.name != LOCK_NAME for p in root.iterdir())
        ):
            raise MemoryExistsError(f"{root} already exists and is not empty")
        model = embedder if isinstance(embedder, Embedder) else Embedder(embedder, device=device)
        dim = model.dim if dim is None else check_int(dim, "dim", maximum=MAX_DIM)
        made_root = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        base = None if member_root is None else check_path(member_root).resolve()
        members = tuple(
            Member(path, None if nodes is None else nodes[i % len(nodes)])
            for i, path in enumerate(member_paths(root, shards, base))
        )
        manifest = ShardedManifest(shards, model.name, dim, members)
        create = {"embedder": model.name, "dim": dim, **memory_options}
        lock = WriterLock(root, lock_timeout)
        try:
            leave = connect(address, shards * shard_cpus)
        except BaseException:
            lock.release()
            raise
        try:
            actors = cls._start(root, manifest, create, {}, shard_cpus, shard_gpus, max_restarts)
            memory = cls(root, manifest, actors, model, cache_config, lock, leave)
            write_manifest(root, manifest)  # last: a folder without it is no sharded memory
            return memory
        except BaseException:
            lock.release()
            if made_root:
                shutil.rmtree(root, ignore_errors=True)
            if leave:
                ray.shutdown()
            raise

    @classmethod
    def open(
        cls,
        root: str | Path,
        *,
        address: str | None = None,
        read_only: bool = False,
        embedder: Embedder | None = None,
        cache: CacheConfig | dict | bool | None = _DEFAULT_CACHE,
        device: str | None = None,
        shard_cpus: float = DEFAULT_SHARD_CPUS,
        shard_gpus: float = 0.0,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        lock_timeout: float | None = 0.0,
        ram_bytes: int | None = None,
        gpu_bytes: int | None = None,
    ) -> ShardedMemory:
        """Open the sharded memory at `root`: its shard actors reopen their members (each
        on its node where the manifest pins it). `read_only`, `lock_timeout`, `ram_bytes`
        and `gpu_bytes` as for `Memory.open` (the budgets apply to each member)."""
        root = check_path(root)
        check_bool(read_only, "read_only")
        cache_config = resolve_cache(cache)
        check_resources(shard_cpus, shard_gpus, max_restarts)
        check_lock_timeout(lock_timeout)
        manifest = read_manifest(root)
        if embedder is not None and (
            not isinstance(embedder, Embedder) or embedder.name != manifest.embedder
        ):
            raise EmbedderMismatchError(
                f"{root} was built with {manifest.embedder!r}; got {embedder!r}"
            )
        model = embedder or Embedder(manifest.embedder, device=device)
        lock = None if read_only else WriterLock(root, lock_timeout)
        options = {
            "read_only": read_only,
            "ram_bytes": ram_bytes,
            "gpu_bytes": gpu_bytes,
            "lock_timeout": lock_timeout,
        }
        try:
            leave = connect(address, manifest.shards * shard_cpus)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            actors = cls._start(root, manifest, None, options, shard_cpus, shard_gpus, max_restarts)
            return cls(root, manifest, actors, model, cache_config, lock, leave)
        except BaseException:
            if lock is not None:
                lock.release()
            if leave:
                ray.shutdown()
            raise

    @staticmethod
    def _start(
        root: Path,
        manifest: ShardedManifest,
        create: dict[str, Any] | None,
        open_options: dict[str, Any],
        cpus: float,
        gpus: float,
        max_restarts: int,
    ) -> list[Any]:
        """One actor per member, placed as the manifest says; waits until every member is
        open (a member that fails to open raises its own error, the others are stopped)."""
        absolute = root.resolve()
        actors: list[Any] = []
        try:
            for shard, member in enumerate(manifest.members):
                options = actor_options(shard, member, cpus, gpus, max_restarts)
                directory = str(member.directory(absolute))
                actors.append(ShardActor.options(**options).remote(directory, create, open_options))
            refs = [a.describe.remote() for a in actors]
            _, pending = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT_S)
            if pending:
                raise ShardUnavailableError(
                    f"{len(pending)} of {len(refs)} shard actors did not start within "
                    f"{START_TIMEOUT_S:.0f} s: each asks for {cpus} CPUs and {gpus} GPUs, and "
                    f"the cluster has {ray.available_resources()} free"
                )
            _gather(refs)
        except BaseException:
            for actor in actors:
                ray.kill(actor, no_restart=True)
            raise
        return actors

    def close(self) -> None:
        """Close every member (each releases its lock), stop the actors, release the root's
        writer lock, and leave the Ray runtime if this memory started or joined it."""
        with self._lock.write():
            if self._closed:
                return
            self._closed = True
        try:
            if ray.is_initialized():  # else the runtime stopped, and its actors with it
                self._stop_actors()
        finally:
            if self._writer_lock is not None:
                self._writer_lock.release()
            if self._leave_runtime:
                ray.shutdown()

    def _stop_actors(self) -> None:
        """Close each member (a dead shard has nothing left to close: every write it
        acknowledged is on disk), then stop its actor."""
        closing = [actor.close.remote() for actor in self._actors]  # all at once
        for shard, (actor, ref) in enumerate(zip(self._actors, closing, strict=True)):
            try:
                ray.get(ref)
            except (RayTaskError, RayActorError) as exc:
                logger.warning("shard %d did not close cleanly: %s", shard, exc)
            ray.kill(actor, no_restart=True)

    def __enter__(self) -> ShardedMemory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        """Slots stored and not expired, over all shards."""
        self._check_open()
        return sum(_gather([a.count.remote() for a in self._actors]))

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.shards} shards"
        return f"ShardedMemory({str(self.path)!r}, {state}, embedder={self.manifest.embedder!r})"

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
        """As `Memory.add`: new slots, spread over the shards by id. An id already stored
        in any shard is refused before anything is written. `dedupe` is not offered: a
        twin may live in any shard, and only one shard's writer lock is held per part."""
        if dedupe is not None:
            raise InvalidInputError("dedupe is not available on a sharded memory")
        return self._write(
            texts, ids, metadata, vectors, False, timestamps=timestamps, ttl=ttl, scope=scope
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
        """As `Memory.upsert`; each id goes to the shard its first write went to."""
        if ids is None:
            raise InvalidInputError("upsert needs ids")
        return self._write(
            texts, ids, metadata, vectors, True, timestamps=timestamps, ttl=ttl, scope=scope
        )

    def remember(
        self,
        text: str,
        role: str = "user",
        metadata: dict | None = None,
        *,
        timestamp: float | None = None,
        ttl: Any = None,
        scope: dict[str, Any] | None = None,
    ) -> str:
        """As `Memory.remember`: one turn stored with its `role`."""
        if not isinstance(text, str):
            raise InvalidInputError(f"remember stores one text, got {type(text).__name__}")
        if not isinstance(role, str) or not role:
            raise InvalidInputError(f"role must be a non-empty string, got {role!r}")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInputError(f"metadata must be a dict, got {type(metadata).__name__}")
        from ..answering import ROLE_KEY

        return self.add(
            [text],
            metadata={**(metadata or {}), ROLE_KEY: role},
            timestamps=timestamp,
            ttl=ttl,
            scope=scope,
        )[0]

    def scope(self, fields: dict[str, Any] | None = None, **more: Any) -> MemoryScope:
        """A view of the slots whose metadata holds `fields`, as `Memory.scope`."""
        self._check_open()
        return MemoryScope(self, check_scope({**(fields or {}), **more}))  # type: ignore[arg-type]

    def delete(self, ids: str | list[str], *, missing_ok: bool = False) -> None:
        """As `Memory.delete`: if any id is unknown, nothing is deleted (unless missing_ok)."""
        self._check_writable()
        ids = list(dict.fromkeys(check_lookup_ids(ids)))
        check_bool(missing_ok, "missing_ok")
        with self._lock.write():
            self._check_open()
            if not missing_ok:
                stored = self._contains(ids)
                missing = sorted(i for i, found in zip(ids, stored, strict=True) if not found)
                if missing:
                    raise UnknownIdError(f"unknown ids (nothing was deleted): {missing[:5]}")
            groups = _by_shard(ids, self.shards)
            self._send_writes(
                ids,
                {s: self._actors[s].delete.remote([ids[i] for i in p]) for s, p in groups.items()},
                groups,
            )

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
        scope: dict[str, Any] | None = None,
        generated: bool = False,
    ) -> WriteResult:
        """Check everything here (as `Memory._write` does), embed once, then send each shard
        its part in parallel. `generated` needs nothing more: dedupe, which it scopes on a
        single memory, is not offered here."""
        self._check_writable()
        texts = check_texts(texts)
        n = len(texts)
        ids = check_ids(ids, n)
        scope = None if scope is None else check_scope(scope)
        meta = [json.loads(m) for m in encode_metadata(scoped_metadata(metadata, n, scope), n)]
        times = slot_times.check_timestamps(timestamps, n)
        ttls = slot_times.check_ttl(ttl, n)
        dim = self.manifest.dim
        vecs = self._embed(texts) if vectors is None else check_vectors(vectors, dim, n)
        with self._lock.write():
            self._check_open()
            if not replace:
                stored = self._contains(ids)
                taken = sorted(i for i, found in zip(ids, stored, strict=True) if found)
                if taken:
                    raise IdAlreadyStoredError(
                        f"ids already stored (use upsert to replace): {taken[:5]}"
                        + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
                    )
            elif scope is not None:
                self._check_in_scope(ids, scope)
            groups = _by_shard(ids, self.shards)
            refs = {}
            for shard, positions in groups.items():
                options: dict[str, Any] = {
                    "timestamps": _pick(times, positions),
                    "ttl": [ttls[i] for i in positions],
                }
                refs[shard] = self._actors[shard].write.remote(
                    replace,
                    [texts[i] for i in positions],
                    [ids[i] for i in positions],
                    [meta[i] for i in positions],
                    vecs[positions],
                    options,
                )
            self._send_writes(ids, refs, groups)
        return WriteResult(ids)

    def _send_writes(
        self, ids: list[str], refs: dict[int, Any], groups: dict[int, list[int]]
    ) -> None:
        """Under the write lock: wait for every shard's part; the cache is cleared whatever
        happened (a part may have landed). A failed part raises ShardWriteError naming the
        ids written and not written."""
        failed: dict[int, RagMemoryError] = {}
        for shard, ref in refs.items():
            try:
                ray.get(ref)
            except (RayTaskError, RayActorError) as exc:
                failed[shard] = _unwrapped(exc, shard)
        self._version += 1
        if self._cache is not None:
            self._cache.clear(self._version)
        if not failed:
            return
        unwritten = [ids[i] for s in failed for i in groups[s]]
        written = [ids[i] for s in refs if s not in failed for i in groups[s]]
        first = next(iter(failed.values()))
        raise ShardWriteError(
            f"shards {sorted(failed)} failed ({type(first).__name__}: {first}); "
            f"{len(written)} ids written, {len(unwritten)} not (upsert them again): "
            f"{unwritten[:5]}",
            written,
            unwritten,
        ) from first

    def _check_in_scope(self, ids: list[str], scope: dict[str, Any]) -> None:
        present = [i for i, found in zip(ids, self._contains(ids), strict=True) if found]
        elsewhere = [s.id for s in self._get(present) if not holds(s.metadata, scope)]
        if elsewhere:
            raise InvalidInputError(
                f"ids stored outside the scope {scope} cannot be upserted within it: "
                f"{elsewhere[:5]}"
            )

    # -- maintenance -------------------------------------------------------------------
    def compact(self) -> dict[str, int]:
        """`Memory.compact` on every shard, in parallel; the counts are summed."""
        self._check_writable()
        done = _gather([a.compact.remote() for a in self._actors])
        with self._lock.write():
            self._version += 1
            if self._cache is not None:
                self._cache.clear(self._version)
        return {key: sum(d.get(key, 0) for d in done) for key in done[0]}

    def rebalance(self) -> dict[int, dict[int, str]]:
        """`Memory.rebalance` on every shard: the moves, per shard."""
        self._check_open()
        return dict(enumerate(_gather([a.rebalance.remote() for a in self._actors])))

    # -- reads -------------------------------------------------------------------------
    def get(self, ids: str | list[str]) -> list[Slot]:
        """The stored slots for `ids`, in order; UnknownIdError if any is not stored."""
        self._check_open()
        return self._get(check_lookup_ids(ids))

    def _get(self, ids: list[str]) -> list[Slot]:
        if not ids:
            return []
        groups = _by_shard(ids, self.shards)
        parts = _gather(
            [self._actors[s].get.remote([ids[i] for i in p]) for s, p in groups.items()]
        )
        out: list[Slot | None] = [None] * len(ids)
        for positions, slots in zip(groups.values(), parts, strict=True):
            for i, slot in zip(positions, slots, strict=True):
                out[i] = slot
        return out  # type: ignore[return-value]

    def contains(self, ids: str | list[str]) -> list[bool]:
        """Whether each of `ids` is stored, in order."""
        self._check_open()
        return self._contains(check_lookup_ids(ids))

    def _contains(self, ids: list[str]) -> list[bool]:
        if not ids:
            return []
        groups = _by_shard(ids, self.shards)
        parts = _gather(
            [self._actors[s].contains.remote([ids[i] for i in p]) for s, p in groups.items()]
        )
        out = [False] * len(ids)
        for positions, found in zip(groups.values(), parts, strict=True):
            for i, f in zip(positions, found, strict=True):
                out[i] = f
        return out

    def ids(self, where: dict | None = None) -> list[str]:
        """The ids of the stored slots passing `where`: shard by shard, each in write order."""
        self._check_open()
        if where is not None:
            compile_where(where)  # refused here, before any shard is asked
        return [i for part in _gather([a.ids.remote(where) for a in self._actors]) for i in part]

    def vectors_of(self, hits: list[Hit]) -> tuple[list[Hit], np.ndarray]:
        """(the hits still stored, their stored vectors), as `Memory.vectors_of`."""
        self._check_open()
        if not isinstance(hits, list) or not all(isinstance(h, Hit) for h in hits):
            raise InvalidInputError("vectors_of needs a list of Hits")
        groups: dict[int, list[int]] = {}
        local = []
        for position, hit in enumerate(hits):
            shard, address = split_address(hit.address, self.shards)
            groups.setdefault(shard, []).append(position)
            local.append(hit.relocated(address))
        parts = _gather(
            [self._actors[s].vectors_of.remote([local[i] for i in p]) for s, p in groups.items()]
        )
        found: dict[int, np.ndarray] = {}
        for positions, (kept, vectors) in zip(groups.values(), parts, strict=True):
            row = {address: vector for address, vector in zip(kept, vectors, strict=True)}
            for i in positions:
                if local[i].address in row:
                    found[i] = row[local[i].address]
        order = sorted(found)
        vectors = (
            np.stack([found[i] for i in order])
            if order
            else np.empty((0, self.manifest.dim), np.float32)
        )
        return [hits[i] for i in order], vectors

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
    ) -> Any:
        """As `Memory.search`: every shard's top k per query, merged exactly (`merge`).
        Multi-hop and recency-aware reads run here in the client, each hop one fan-out."""
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
        overrides: dict[str, Any] = {}
        if nprobe is not None:
            overrides["nprobe"] = check_k(nprobe, "nprobe")
        if refine_factor is not None:
            overrides["refine_factor"] = check_k(refine_factor, "refine_factor")
        if recall_target is not None:
            overrides["recall_target"] = check_recall_target(recall_target)
        use_cache = cache and not overrides

        def plain(q: Any, n: int, search_mode: str | None = mode) -> Any:
            return self._plain(
                q, n, where, where_sql, use_cache, overrides, search_mode, hybrid_config
            )

        if half_life is None and hops == 1:
            return plain(query, k)
        single, queries = self._split_queries(query)
        results = [
            read_with_recall(
                q,
                k,
                search=plain,
                dense_search=lambda v, n: plain(v, n, DENSE),
                stored_vectors=self.vectors_of,
                query_vector=lambda text: self._encode([text])[0],
                half_life=half_life,
                hops=hops,
                config=recall_config,
            )
            for q in queries
        ]
        return results[0] if single else results

    def _split_queries(self, query: Any) -> tuple[bool, list[Any]]:
        if isinstance(query, str) or is_text_batch(query):
            return isinstance(query, str), check_texts(as_list(query, "query"))
        if isinstance(query, (list, tuple)) and not query:
            raise InvalidInputError("query is an empty list")
        vectors = check_vectors(query, self.manifest.dim, what="query vectors")
        return np.ndim(query) == 1, list(vectors)

    def _plain(
        self,
        query: Any,
        k: int,
        where: dict | None,
        where_sql: Any,
        use_cache: bool,
        overrides: dict[str, Any],
        mode: str | None,
        hybrid: HybridConfig | None,
    ) -> Any:
        """One plain search: embed (texts), look up the client cache, fan the misses out to
        every shard once, merge, fill the cache."""
        is_text = isinstance(query, str) or is_text_batch(query)
        resolved = resolve_mode(mode, is_text, self._lexical)
        texts: list[str] | None = None
        if is_text:
            texts = check_texts(as_list(query, "query"))
            single = isinstance(query, str)
            vectors = None if resolved == LEXICAL else self._encode(texts)
        else:
            single, queries = self._split_queries(query)
            vectors = np.stack(queries)
        n = len(texts) if texts is not None else len(vectors)  # type: ignore[arg-type]
        qcache = self._cache if use_cache else None
        dense_key = group_key(k, where)
        text_key = (dense_key, resolved, hybrid.key() if resolved == HYBRID and hybrid else None)
        with self._lock.read():
            self._check_open()
            found: list[list[Hit] | None]
            if qcache is None:
                found = [None] * n
            elif resolved == DENSE:
                found = qcache.lookup(vectors, dense_key)  # type: ignore[arg-type]
            else:
                found = qcache.lookup_texts(texts, text_key, self._version)  # type: ignore[arg-type]
            todo = [i for i, hits in enumerate(found) if hits is None]
            if todo:
                part = None if vectors is None else vectors[todo]
                asked: Any = part if resolved == DENSE else [texts[i] for i in todo]  # type: ignore[index]
                payload = ray.put((asked, None if resolved == DENSE else part))
                options = {**overrides, "mode": resolved}
                if resolved == HYBRID and hybrid is not None:
                    options["hybrid"] = hybrid
                fresh = merge_top_k(
                    _gather([a.search.remote(payload, k, where, options) for a in self._actors]), k
                )
                if qcache is not None and resolved == DENSE:
                    qcache.store(part, dense_key, where_sql, fresh, self._version)  # type: ignore[arg-type]
                elif qcache is not None:
                    qcache.store_texts([texts[i] for i in todo], text_key, fresh, self._version)  # type: ignore[index]
                for i, hits in zip(todo, fresh, strict=True):
                    found[i] = hits
        results: list[list[Hit]] = found  # type: ignore[assignment]
        dense = len(todo) if resolved != LEXICAL else 0
        self._reads.record(
            ReadCounts(
                searches=n,
                dense_queries=dense,
                lexical_queries=len(todo) if resolved != DENSE else 0,
                cache_hits=n - len(todo),
                slots_read=sum(map(len, results)),
                hops=n,
            )
        )
        return results[0] if single else results

    def embed(self, texts: str | list[str]) -> np.ndarray:
        """The unit vectors the memory's embedder gives `texts` (through the cache)."""
        self._check_open()
        return self._encode(check_texts(texts))

    def stats(self) -> dict[str, Any]:
        """The members' figures merged (slots, bytes, shards per tier), their lexical index's
        settings, and per shard its node, its actor's process id, its slots, tiers and bytes."""
        self._check_open()
        members = _gather([a.stats.remote() for a in self._actors])
        where = _gather([a.describe.remote() for a in self._actors])
        tiers: dict[str, dict[str, int]] = {}
        for member in members:
            for tier, figures in member["tiers"].items():
                merged = tiers.setdefault(tier, {"shards": 0, "bytes": 0})
                merged["shards"] += figures["shards"]
                merged["bytes"] += figures["bytes"]
        return {
            "path": str(self.path),
            "shards": self.shards,
            "routing": self.manifest.routing,
            "slots": sum(m["slots"] for m in members),
            "embedder": self.manifest.embedder,
            "dim": self.manifest.dim,
            "read_only": self.read_only,
            "version": self._version,
            "tiers": tiers,
            "disk_bytes": sum(m["disk_bytes"] for m in members),
            # one set of create options made every member's index: the first one's settings
            "lexical": members[0]["lexical"],
            "members": [
                {
                    "shard": shard,
                    "node": w["node"],
                    "ip": w["ip"],
                    "pid": w["pid"],
                    "path": w["path"],
                    "slots": m["slots"],
                    "tiers": m["tiers"],
                    "disk_bytes": m["disk_bytes"],
                }
                for shard, (m, w) in enumerate(zip(members, where, strict=True))
            ],
            "reads": self._reads.stats(),
            "cache": self._cache.stats() if self._cache else {"enabled": False},
            **({"generator": self._generator.stats()} if self._generator else {}),
        }

    def shard_pids(self) -> list[int]:
        """The process id of each shard's actor now (what a fault test kills)."""
        self._check_open()
        return [w["pid"] for w in _gather([a.describe.remote() for a in self._actors])]

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

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._cache.encode(texts, self._embed) if self._cache else self._embed(texts)
