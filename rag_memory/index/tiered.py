"""TieredIndex: all of a memory's vectors, one growing shard and sealed IVF shards in tiers.

The index owns its shards' whole lifecycle: it opens them (repairing what an interrupted seal
left behind), searches them, seals the growing shard into IVF shards, merges crowded groups,
moves shards between tiers by heat, and, in a read-only replica, catches up with the writer's
commits. Its state is private; callers use the methods below. A query is routed once (the
router's coarse quantizer gives its nprobe partitions), then the shards of the CPU tiers are
searched as one stacked IVF index in one FAISS call per layer (stacked.py) and GPU-tier shards
one by one (fanout.py), and their top-k merged exactly. The heavy
pure parts (router training, shard writing and merging) are free functions in sealing.py and
shard_files.py; this class calls them without its lock and swaps their results in under it.

Locking: `lock` is a readers-writer lock. Searches hold it for reading; a change that must
look atomic to searches (a write committed to the slot table and applied here, a swap of
shards) holds it for writing. One seal, compaction or rebalance runs at a time.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

import faiss
import numpy as np

from ..errors import CorruptFileError, StorageError, UnsyncedReplaceError
from ..fsutil import storage_error
from ..locks import ReadWriteLock
from ..manifest import MANIFEST_NAME, Manifest, RouterRecord, read_manifest
from .base import TIERS, Route, ShardTable, TableSnapshot
from .budgets import Budgets
from .config import IndexConfig
from .fanout import ProbeCounts, search_sealed
from .growing import GrowingShard
from .maintenance import DeferredMaintenance
from .merge import merge_topk
from .plan import min_train_vectors
from .recall_curve import nprobe_for
from .router import Router
from .sealed import SealedShard
from .sealed_set import SealedSet
from .sealing import groups_to_merge, orphan_files, train_router, write_group_shards
from .shard_files import SHARDS_DIR, merge_shards, remove_shard_files
from .stacked import StackedShards

logger = logging.getLogger(__name__)

QUERY_CHUNK = 256  # queries per sealed search: bounds the candidates held at once
# The stacked tiers' probes become per-shard heat every this many queries (and before heat or
# counters are read): a rounding of the heat clock far below its half-life.
TALLY_QUERIES = 64
# nprobe of a memory whose router was trained before recall curves were recorded (the
# default then), when its config leaves nprobe to the recall target
UNCALIBRATED_NPROBE = 32
# A reader beside a writer re-reads the manifest when the one it read was replaced (and its
# retired files deleted) while it opened; this many times in a row is no longer a race.
OPEN_ATTEMPTS = 20


class SearchKnobs(TypedDict, total=False):
    """Per-call search settings that override the memory's own (`Memory.search` checks them)."""

    nprobe: int
    refine_factor: int
    recall_target: float


@dataclass
class _Opened:
    """One consistent view of a memory's vectors: a manifest's sealed shards and the growing
    shard from the table snapshot taken with them."""

    growing: GrowingShard
    sealed: SealedSet
    version: int
    table_generation: int


class TieredIndex:
    """All of a memory's vectors: one growing shard and any number of sealed shards."""

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        table: ShardTable,
        budgets: Budgets,
        read_only: bool,
    ) -> None:
        self.lock = ReadWriteLock()
        self.read_only = read_only
        self._caught_up = threading.local()  # per thread: the commit mark caught up to
        self.budgets = budgets
        self._directory = directory
        self._shard_dir = directory / SHARDS_DIR
        self._table = table
        self._maintenance_lock = threading.Lock()  # one seal / compaction / rebalance at a time
        # Pool threads run FAISS single-threaded: parallelism comes from the pool itself.
        self._pool = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 1,
            thread_name_prefix="rag-memory-shard",
            initializer=faiss.omp_set_num_threads,
            initargs=(1,),
        )
        self._counters_lock = threading.Lock()
        self._counters = ProbeCounts()
        self._last_rebalance = 0
        self._maintenance = DeferredMaintenance()
        # True when a seal or merge committed its manifest but the slot table's record of it
        # failed: the next commit (or open) records every shard, not only its new ones.
        self._table_behind = False
        # True when the manifest in place could not be synced (UnsyncedReplaceError): the
        # next commit syncs it first, and nothing the older manifest names is deleted before.
        self._manifest_unsynced = False
        self._closing = False
        self._stacked: StackedShards | None = None
        self._gpu_shards: list[SealedShard] = []
        self._sealed_live = 0
        self.config = IndexConfig.from_dict(manifest.index)
        try:
            opened = self._open(manifest)
            self._install(opened)
            if not read_only:
                self._repair(opened.table_generation)
        except BaseException:
            self.close()
            raise

    # -- opening -----------------------------------------------------------------------
    def _open(self, manifest: Manifest) -> _Opened:
        """Open `manifest`'s shards and the growing shard from one table snapshot. A reader
        whose manifest was replaced by the writer meanwhile (its shards retired, the table a
        generation ahead) starts again from the newer manifest; a writer, or a manifest that
        stays the same, raises."""
        for _ in range(OPEN_ATTEMPTS):
            try:
                return self._open_once(manifest)
            except (CorruptFileError, FileNotFoundError) as exc:
                newer = read_manifest(self._directory) if self.read_only else manifest
                if newer.generation != manifest.generation:
                    manifest = newer
                    continue
                if isinstance(exc, FileNotFoundError):
                    raise CorruptFileError(exc.filename or self._shard_dir, "missing") from exc
                raise
            except StorageError:
                raise
            except OSError as exc:  # a read failed below us (EIO, EACCES...)
                path = Path(exc.filename or self._shard_dir)
                raise storage_error(path, "reading", exc.strerror or str(exc), exc.errno) from exc
        raise CorruptFileError(
            self._directory / MANIFEST_NAME,
            f"replaced {OPEN_ATTEMPTS} times in a row while this reader opened it",
        )

    def _open_once(self, manifest: Manifest) -> _Opened:
        snapshot = self._table.snapshot()
        self._check_generations(manifest, snapshot)
        growing = GrowingShard(manifest.dim)
        sealed = SealedSet(
            self._directory,
            manifest,
            self.config.heat_half_life,
            snapshot.deleted,
            self.budgets,
            growing.bytes_for(len(snapshot.growing_addrs)),
        )
        try:
            if sealed.router is not None:
                growing.index_with(sealed.router)
            addrs, vectors = snapshot.growing_addrs, snapshot.growing_vectors
            if len(sealed):  # the table lags the manifest after a crash between the commits
                fresh = ~np.isin(addrs, sealed.all_addrs())
                addrs, vectors = addrs[fresh], vectors[fresh]
            growing.add(addrs, vectors)
            stored = growing.live_count + sum(s.live_count for s in sealed.shards)
            if stored != snapshot.live:
                raise CorruptFileError(
                    self._table.path,
                    f"slot count {snapshot.live} does not match the {stored} vectors stored",
                )
        except BaseException:
            sealed.close()
            raise
        return _Opened(growing, sealed, snapshot.version, snapshot.generation)

    def _install(self, opened: _Opened) -> None:
        """Serve `opened` from now on (at open, or a replica's reload under the write lock)."""
        self._flush_probes()  # into the shards they were probed in
        self._growing, self._sealed, self._version = opened.growing, opened.sealed, opened.version
        self._restack()

    def _restack(self) -> None:
        """Rebuild what searches read of the sealed shards after any change to them (a
        swap, a tier move, new tombstones): the stacked CPU tiers, the GPU-tier shards and
        the live count. At open, or under the write lock."""
        self._flush_probes()  # counted with the layout they were probed in
        router, shards = self._sealed.router, self._sealed.shards
        if router is not None:
            self._growing.index_with(router)
        self._gpu_shards = [s for s in shards if s.tier == "gpu"]
        cpu = [s for s in shards if s.tier != "gpu"]
        self._stacked = None if router is None else StackedShards(router, cpu, self._stacked)
        self._sealed_live = sum(s.live_count for s in shards)

    def _check_generations(self, manifest: Manifest, snapshot: TableSnapshot) -> None:
        """The manifest is the commit point and the table follows it, so the table's
        generation is the manifest's, or one less after a crash between the two commits.
        Anything else is a file restored from another time: refused before anything is
        opened, repaired or deleted."""
        path, table = self._directory / MANIFEST_NAME, self._table.path.name
        if snapshot.generation > manifest.generation:
            raise CorruptFileError(
                path,
                f"the slot table is ahead of this manifest (generation {snapshot.generation} "
                f"> {manifest.generation}): manifest.json is older than {table} (restored "
                "from an older copy?). Nothing was changed; put back the manifest.json "
                f"written with this {table}",
            )
        if snapshot.generation < manifest.generation - 1:
            raise CorruptFileError(
                path,
                f"this manifest is {manifest.generation - snapshot.generation} generations "
                f"ahead of the slot table (a crash leaves at most one): {table} is older than "
                "manifest.json (restored from an older copy?). Nothing was changed",
            )

    def _repair(self, table_generation: int) -> None:
        """Writer only, once the open succeeded (every check passed): complete a commit a
        crash interrupted (the table records the manifest's shards), then delete the files
        no manifest names (written by a seal or merge that never committed, or retired by
        one that did)."""
        manifest = self._sealed.manifest
        if table_generation != manifest.generation:
            logger.warning(
                "completing an interrupted commit: the slot table is one generation behind "
                "the manifest (%d < %d)",
                table_generation,
                manifest.generation,
            )
            try:
                self._record_all_shards()
            except Exception as exc:  # searches are right without it; the next commit retries
                self._table_behind = True
                self._maintenance.failed("recording a seal in the slot table", exc, retry=False)
        self._remove_orphans()

    def _record_all_shards(self) -> None:
        """Bring the table's shard column up to the manifest: every shard, by address."""
        shards = self._sealed.shards
        self._table.apply_sealing(
            self._sealed.manifest.generation,
            {s.shard_id: s.addrs for s in shards},
            [s.shard_id for s in shards],
        )
        self._table_behind = False

    def _remove_orphans(self) -> None:
        """Delete the files under shards/ the manifest does not name: written by a seal or
        merge that never committed, or retired by one that did. Not while the manifest in
        place is unsynced: the older one a power cut could restore may name them."""
        if self._manifest_unsynced:
            return
        for path in orphan_files(self._shard_dir, self._sealed.manifest):
            logger.warning("removing %s: no manifest names it", path)
            try:
                path.unlink()
            except OSError as exc:
                logger.warning("could not remove %s (%s): left for the next open", path, exc)

    # -- what callers may read ---------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        return self._sealed.manifest

    @property
    def router(self) -> Router | None:
        """The trained router (None before the first seal). Advanced: for inspecting
        partitions or building a plain FAISS IVF index on the same centroids."""
        return self._sealed.router

    @property
    def growing(self) -> GrowingShard:
        """The exact shard of slots not yet sealed (read it; writes go through the index)."""
        return self._growing

    @property
    def sealed_shards(self) -> list[SealedShard]:
        """The sealed shards, by id (read them; the index swaps and retires them)."""
        return self._sealed.shards

    @property
    def version(self) -> int:
        """The slot-table version this index reflects: its one owner. A query cache entry
        stored at this version is fresh until the index moves past it."""
        return self._version

    def live_count(self) -> int:
        return self._growing.live_count + self._sealed_live

    def nprobe(self, recall_target: float | None = None) -> int:
        """Partitions a search probes: `IndexConfig.nprobe` when set (and no target is asked
        for), else the fewest that reach the recall target on the router's recall curve."""
        if recall_target is None and self.config.nprobe is not None:
            return self.config.nprobe
        record = self.manifest.router
        if record is None or record.recall_curve is None:
            return self.config.nprobe or UNCALIBRATED_NPROBE
        return nprobe_for(record.recall_curve, recall_target or self.config.recall_target)

    def should_seal(self) -> bool:
        return len(self._growing) >= self.config.seal_threshold

    # -- writes (the caller holds lock.write() and has committed them to the table) -----
    def apply_write(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray) -> None:
        """Apply a committed write: `removed` addresses leave, `added` ones join the growing
        shard. Removed slots leave the growing shard or become tombstones of a sealed one
        (dropped by compaction)."""
        if len(removed):
            self._growing.remove(removed)
            if self._sealed.tombstone(removed):
                self._restack()
        self._growing.add(added, vectors)
        self._version = self._table.version()

    # -- search (the caller holds lock.read()) -----------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        nprobe: int | None = None,
        refine_factor: int | None = None,
        recall_target: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, addresses) over the growing shard (exact) merged with the routed
        sealed shards' top-k; `allowed` restricts the answer to those live addresses.
        `nprobe`, else `recall_target`, else the config decides the partitions probed."""
        # No more hits than slots that can answer: results are allocated k wide per query.
        k = min(k, max(1, self.live_count() if allowed is None else len(allowed)))
        stack = self._stacked
        queries = np.ascontiguousarray(queries, dtype=np.float32)  # what FAISS reads
        if stack is None:  # no router yet: the growing shard is exact
            hits = self._growing.search(queries, k, allowed)
            return hits.scores, hits.addrs
        nprobe = min(nprobe or self.nprobe(recall_target), stack.router.nlist)
        refine = refine_factor or self.config.refine_factor
        parts = [
            self._search_routed(stack, queries[i : i + QUERY_CHUNK], k, allowed, nprobe, refine)
            for i in range(0, len(queries), QUERY_CHUNK)
        ]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _search_routed(
        self,
        stack: StackedShards,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        nprobe: int,
        refine: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Route the batch once; search the stacked CPU tiers, the GPU-tier shards and the
        same partitions of the growing shard, and merge their top-k."""
        coarse, lists = stack.route(queries, nprobe)
        parts: list[tuple[np.ndarray, ...]] = []
        counts = ProbeCounts()
        growing = len(self._growing) > 0 or not (len(stack) or self._gpu_shards)
        if growing or self._gpu_shards:  # they take the router's own partition ids
            route = Route(stack.global_lists(lists), coarse)
        if growing:
            grown = self._growing.search(queries, k, allowed, route)
            parts.append((grown.scores, grown.addrs))
        if len(stack):
            *found, refine_read = stack.search(queries, k, allowed, coarse, lists, refine)
            parts.append(tuple(found))
            counts.disk_bytes += refine_read
        if self._gpu_shards:
            *found, probed = search_sealed(
                stack.router, self._gpu_shards, queries, k, allowed, route, refine, self._pool.map
            )
            parts.append(tuple(found))
            counts.add(probed)
        scores, addrs = merge_topk(parts, k)[:2]
        if counts.per_shard or counts.disk_bytes:  # the stack's tally counts these queries
            self._record_probes(0 if len(stack) else len(queries), counts)
        if len(stack) and stack.tally(lists) >= TALLY_QUERIES:
            self._record_probes(*stack.take_counts())
        return scores, addrs

    def _record_probes(self, n_queries: int, counts: ProbeCounts) -> None:
        """Heat (per shard) and tier counters of `n_queries` searched queries."""
        if n_queries or counts.per_shard:
            self._sealed.record_probes(n_queries, counts.per_shard)
        with self._counters_lock:
            self._counters.fast += counts.fast
            self._counters.total += counts.total
            self._counters.disk_bytes += counts.disk_bytes

    def _flush_probes(self) -> None:
        """Record what the stacked tiers tallied (before their layout changes, a rebalance
        reads heat, or stats report the counters)."""
        if self._stacked is not None:
            self._record_probes(*self._stacked.take_counts())

    def iter_live_vectors(self, batch: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(addresses, full-precision vectors) of every live slot, in chunks: the growing
        shard's, then each sealed shard's read from its .vec file without its tombstones."""
        addrs, vectors = self._growing.snapshot()
        if len(addrs):
            yield addrs, vectors
        for shard in self._sealed.shards:
            for start in range(0, len(shard), batch):
                stop = min(len(shard), start + batch)
                keep = ~np.isin(shard.addrs[start:stop], shard.tombstones)
                yield shard.addrs[start:stop][keep], shard.all_vectors(start, stop)[keep]

    def vectors_of(self, addrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which of `addrs` are live slots, their full-precision vectors in that order):
        what a multi-hop read adds to its next query (caller holds the read lock)."""
        addrs = np.asarray(addrs, dtype=np.int64)
        found = np.zeros(len(addrs), dtype=bool)
        out = np.empty((len(addrs), self.manifest.dim), dtype=np.float32)
        held, vectors = self._growing.vectors_of(addrs)
        found[held], out[held] = True, vectors
        for shard in self._sealed.shards:
            held = ~found & np.isin(addrs, shard.addrs) & ~np.isin(addrs, shard.tombstones)
            if held.any():
                found[held], out[held] = True, shard.vectors_of(addrs[held])
        return found, out[found]

    # -- sealing and compaction --------------------------------------------------------
    def seal_when_due(self) -> int:
        """After a write: seal if the growing shard is full. A failure is deferred maintenance
        (logged, in `stats()["maintenance"]`, retried after a backoff), never the failure
        of the write, which is already committed. Returns vectors sealed."""
        if not self.should_seal() or not self._maintenance.due():
            return 0
        try:
            return self.seal()
        except Exception as exc:  # any cause: disk full, I/O error, FAISS, memory
            self._maintenance.failed("sealing the growing shard", exc)
            return 0

    def seal(self, force: bool = False) -> int:
        """Seal the growing shard into IVF shards if it reached the threshold (or `force`),
        then merge groups that have `merge_threshold` shards. Returns vectors sealed. The
        heavy work runs outside the lock; only the swap holds it for writing. If it fails
        before its commit, the files it wrote are removed and the memory is as before."""
        with self._maintenance_lock:
            with self.lock.read():
                addrs, vectors = self._growing.snapshot()
            if not len(addrs) or (not force and len(addrs) < self.config.seal_threshold):
                return 0
            router, record = self._sealed.router, None
            if router is None and len(addrs) < min_train_vectors(self.config.kind):
                logger.info("%d vectors are too few to train the router: kept exact", len(addrs))
                return 0
            self._require_table_current()
            try:
                if router is None:
                    router, record = train_router(
                        vectors, self.config, self.budgets.ram_bytes, self._shard_dir
                    )
                first = self._sealed.next_shard_id()
                infos = write_group_shards(self._shard_dir, first, router, addrs, vectors)
                # placed beside what stays in the growing shard once these vectors leave it
                staying = self._growing.bytes_for(max(0, len(self._growing) - len(addrs)))
                new = self._sealed.open_new(infos, router, staying)
            except BaseException:
                self._remove_orphans()
                raise
            with self.lock.write():
                self._commit(new, [], router, record)
            logger.info("sealed %d vectors into %d shards", len(addrs), len(new))
            if not self._table_behind:  # else the next write's seal records it first
                self._merge_groups(self.config.merge_threshold, 1.0)
                self._maintenance.succeeded()
            return len(addrs)

    def compact(self) -> dict[str, int]:
        """Seal everything, then rewrite every group that has several shards or any tombstone."""
        sealed = self.seal(force=True)
        with self._maintenance_lock:
            merged = self._merge_groups(2, 1e-12)
        return {"sealed": sealed, "groups_rewritten": merged}

    def _merge_groups(self, min_shards: int, min_tombstone_ratio: float) -> int:
        """Rewrite each chosen group's shards as one, without tombstones (the caller holds
        the maintenance lock). Extra RAM: one merged group at a time."""
        router = self._sealed.router
        if router is None:
            return 0
        shards = {s.shard_id: s for s in self._sealed.shards}
        chosen = groups_to_merge(shards, min_shards, min_tombstone_ratio)
        for group, shard_ids in chosen.items():
            self._require_table_current()
            parts = [shards[i] for i in shard_ids]
            try:
                info = merge_shards(
                    self._shard_dir, self._sealed.next_shard_id(), router, group, parts
                )
                new = self._sealed.open_new([info], router, self._growing.held_bytes)
            except BaseException:
                self._remove_orphans()
                raise
            with self.lock.write():
                self._commit(new, shard_ids, router, None)
        return len(chosen)

    def _require_table_current(self) -> None:
        """Before a new commit: make the last manifest durable if its sync failed, and if the
        table missed the last commit, record it now (raising if either still fails), so the
        table never lags the manifest by more than a generation, nor leads a durable one."""
        if self._manifest_unsynced:
            self._sealed.sync_manifest()
            self._manifest_unsynced = False
            self._remove_orphans()  # the retired files no durable manifest names any more
        if self._table_behind:
            with self.lock.write():
                self._record_all_shards()

    def _commit(
        self,
        new: list[SealedShard],
        retired: list[int],
        router: Router,
        record: RouterRecord | None,
    ) -> None:
        """Swap new shards in and retired ones out: the manifest first (the commit point),
        then the slot table, then the retired files (the caller holds the write lock).
        Slots deleted while the new shards were being built become their tombstones. A
        failure to record the commit in the table is deferred (the manifest has committed;
        searches are right, the next commit or open records it) and never loses a file."""
        for shard in new:
            if retired:  # a merge: deletions since its snapshot sit on the retired shards
                tombs = np.concatenate([self._sealed[i].tombstones for i in retired])
                gone = tombs[np.isin(tombs, shard.addrs)]
            else:  # a seal: deletions since the snapshot already left the growing shard
                gone = shard.addrs[~np.isin(shard.addrs, self._growing.addresses)]
            shard.set_tombstones(gone)
        retiring = [self._sealed[i] for i in retired]
        try:
            closing = self._sealed.swap(new, retired, router, record)
        except UnsyncedReplaceError as exc:
            # In place but not durable: a power cut could bring the old manifest back, so the
            # table keeps the old generation and the retired files stay until a sync succeeds.
            self._manifest_unsynced = self._table_behind = True
            self._maintenance.failed("syncing the manifest of a seal", exc)
            self._finish_swap(new, retired)
            self._restack()
            for shard in retiring:
                shard.close()
            return
        except BaseException:  # not committed: the memory stays as it was
            for shard in new:
                shard.close()
            self._remove_orphans()
            raise
        self._finish_swap(new, retired)
        self._restack()
        try:
            if self._table_behind:
                self._record_all_shards()
            else:
                self._table.apply_sealing(
                    self._sealed.manifest.generation,
                    {s.shard_id: s.addrs for s in new},
                    [s.shard_id for s in self._sealed.shards],
                )
        except Exception as exc:
            self._table_behind = True
            self._maintenance.failed("recording a seal in the slot table", exc)
        for shard in closing:
            shard.close()
            self._remove_files(shard.shard_id)

    def _finish_swap(self, new: list[SealedShard], retired: list[int]) -> None:
        """A seal's vectors leave the growing shard once its manifest is in place."""
        if not retired:
            for shard in new:
                self._growing.remove(shard.addrs)

    def _remove_files(self, shard_id: int) -> None:
        """Delete a retired shard's files; one that cannot be deleted is an orphan the next
        open removes, never a failure of the commit that retired it."""
        try:
            remove_shard_files(self._shard_dir, shard_id)
        except OSError as exc:
            logger.warning(
                "could not delete retired shard %d (%s): left for the next open", shard_id, exc
            )

    # -- tiers -------------------------------------------------------------------------
    def needs_rebalance(self) -> bool:
        every = self.config.rebalance_every
        due = self._sealed.queries_seen - self._last_rebalance >= every
        return bool(every and len(self._sealed) and due)

    def rebalance_in_background(self) -> None:
        """Start a rebalance in a daemon thread when one is due and none is running."""
        if self.needs_rebalance() and not self._maintenance_lock.locked() and not self._closing:
            threading.Thread(
                target=self.rebalance, daemon=True, name="rag-memory-rebalance"
            ).start()

    def rebalance(self) -> dict[int, str]:
        """Move sealed shards between tiers by heat within the budgets now; a writer
        records the new tiers and heat in the manifest. Returns the moves."""
        with self._maintenance_lock:
            if self._closing:
                return {}
            self._flush_probes()
            self._last_rebalance = self._sealed.queries_seen
            try:
                moved = self._sealed.rebalance(self.lock, self._growing.held_bytes)
            except (CorruptFileError, FileNotFoundError):
                if not self.read_only:
                    raise
                # the writer retired a shard this replica still serves: its next catch-up
                # reloads the new generation, whose shards the next rebalance places
                logger.info("rebalance skipped: the writer replaced shards meanwhile")
                return {}
            if moved or not self.read_only:
                with self.lock.write():
                    if moved:
                        self._restack()
                    if not self.read_only:
                        self._sealed.write_manifest(new_generation=False)
            return moved

    def record_lexical(self, lexical: dict[str, Any] | None) -> None:
        """Record the lexical index's settings in the manifest (after `Memory.reindex` built
        it); the caller holds the write lock. The shards and generation stay as they are."""
        self._sealed.write_manifest(new_generation=False, lexical=lexical)

    # -- read-only replicas ------------------------------------------------------------
    def catch_up(self, on_change: Callable[[], None]) -> None:
        """A read-only replica applies the writer's commits since it last looked: new and
        deleted slots, or after a seal or compaction (a new generation in the table) the
        new shards. Every step reads one table snapshot, and a reload that fails leaves the
        replica as it was. `on_change` runs when something changed, under the same write
        lock (caches of the caller's that the change made stale are dropped before any
        search sees it)."""
        if not self.read_only:
            return
        mark = self._table.commit_mark()  # recorded once caught up to it, per thread
        if mark == getattr(self._caught_up, "mark", None):
            return
        version, generation = self._table.counters()
        # The manifest commits before the table: a replica that read a manifest a generation
        # ahead of the table (between the writer's two commits) is not behind.
        if version != self._version or generation > self.manifest.generation:
            self._apply_commits(on_change)
        self._caught_up.mark = mark

    def _apply_commits(self, on_change: Callable[[], None]) -> None:
        """`catch_up`'s work once the counters say the replica is behind."""
        with self.lock.write():
            changes = self._table.snapshot(self._version)
            if changes.generation > self.manifest.generation:
                old = self._sealed
                self._install(self._open(read_manifest(self._directory)))
                old.close()
            else:
                self._growing.remove(changes.growing_addrs)  # a slot is never added twice
                self._growing.add(changes.growing_addrs, changes.growing_vectors)
                self._growing.remove(changes.deleted)
                if self._sealed.tombstone(changes.deleted):
                    self._restack()
                self._version = changes.version
            on_change()

    # -- reporting and closing ---------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        shards = [{**self._growing.stats(), "heat": None}, *self._sealed.stats()]
        tiers = {t: {"shards": 0, "bytes": 0} for t in TIERS}
        for line in shards:
            tiers[line["tier"]]["shards"] += 1
            tiers[line["tier"]]["bytes"] += line["bytes"]
        # full-precision copies, read for re-ranking and compaction
        tiers["disk"]["bytes"] += self._sealed.vector_file_bytes()
        self._flush_probes()
        with self._counters_lock:
            counts = replace(self._counters)
        record = self.manifest.router
        return {
            "shards": shards,
            "tiers": tiers,
            "budgets": self.budgets.to_dict(),
            "fast_tier_hit_ratio": counts.fast / counts.total if counts.total else None,
            "disk_bytes_read": counts.disk_bytes,
            "probes": counts.total,
            "maintenance": {
                **self._maintenance.stats(),
                "slot_table_behind_manifest": self._table_behind,
            },
            "index": {
                **self.config.to_dict(),
                "kind_chosen": record.kind if record else None,
                "nlist_chosen": record.nlist if record else None,
                "reason": record.reason if record else "no sealed shard yet: exact search",
                "nprobe_chosen": self.nprobe() if record else None,
                "recall_curve": record.recall_curve if record else None,
            },
        }

    def stop_maintenance(self) -> None:
        """Before close: start no more background work and wait for what runs (a rebalance
        thread must not install into closed shards or write a manifest after the lock is
        released). Call it without holding `lock`: maintenance takes it to swap."""
        self._closing = True
        with self._maintenance_lock:
            pass

    def close(self) -> None:
        self._closing = True
        self._pool.shutdown(wait=True)
        sealed = getattr(self, "_sealed", None)
        if sealed is not None:
            sealed.close()
