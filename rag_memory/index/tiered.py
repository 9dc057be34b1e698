"""TieredIndex: the growing shard plus sealed IVF shards routed by centroid and placed in tiers.

A query is routed once (the codec's coarse quantizer gives its nprobe partitions), then only the
shards holding those partitions are searched, each in its tier, in parallel; their top-k lists
are merged exactly (faiss ResultHeap). IVF-PQ candidates are re-ranked with full-precision
vectors before the merge, as FAISS IndexRefine does. Writes land in the growing shard; sealing,
compaction and rebalancing live in maintenance.py.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..locks import ReadWriteLock
from ..manifest import Manifest, write_manifest
from ..store.slot_table import SlotTable
from .codec import Codec, CodecInfo
from .config import IndexConfig
from .growing import GrowingShard
from .merge import merge_topk
from .placement import HeatTracker, place_shards
from .sealed import TIERS, SealedShard

logger = logging.getLogger(__name__)

SHARDS_DIR = "shards"
DEFAULT_GPU_BYTES = 4 << 30
# Re-ranking reads candidate vectors in chunks of this many rows (~12 MiB at dim 384), so a big
# batch never holds all its candidates' full vectors at once.
REFINE_CHUNK_ROWS = 8192
QUERY_CHUNK = 256
MERGE_BATCH = 16


def default_gpu_bytes(gpu_bytes: int | None) -> int:
    """GPU budget: as given, else 4 GiB when FAISS sees a GPU, else 0 (no GPU tier)."""
    if gpu_bytes is not None:
        return gpu_bytes
    return DEFAULT_GPU_BYTES if faiss.get_num_gpus() > 0 else 0


class TieredIndex:
    """All of a memory's vectors: one growing shard and any number of sealed shards."""

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        table: SlotTable,
        lock: ReadWriteLock,
        ram_bytes: int | None,
        gpu_bytes: int | None,
        read_only: bool,
    ) -> None:
        self.directory = directory
        self.shard_dir = directory / SHARDS_DIR
        self.manifest = manifest
        self.config = IndexConfig.from_dict(manifest.index)
        self.table = table
        self.lock = lock  # the Memory's readers-writer lock: swaps take it for writing
        self.maintenance = threading.Lock()  # one seal / compaction / rebalance at a time
        self.read_only = read_only
        self.ram_bytes = ram_bytes
        self.gpu_bytes = default_gpu_bytes(gpu_bytes)
        self.growing = GrowingShard(manifest.dim)
        self.codec: Codec | None = None
        self.sealed: dict[int, SealedShard] = {}
        self.heat = HeatTracker(
            self.config.heat_half_life, {s.shard_id: s.heat for s in manifest.shards}
        )
        # Pool threads run FAISS single-threaded: parallelism comes from the pool itself.
        self._pool = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 1,
            thread_name_prefix="rag-memory-shard",
            initializer=faiss.omp_set_num_threads,
            initargs=(1,),
        )
        self._counters_lock = threading.Lock()
        self.counters = {"probes_fast": 0, "probes_total": 0, "disk_bytes_read": 0}
        self._last_rebalance = 0
        self._open_sealed()

    # -- opening -----------------------------------------------------------------------
    def _open_sealed(self) -> None:
        """Open the manifest's shards, placed by their recorded heat within today's budgets."""
        record = self.manifest.codec
        if record is None:
            return
        info = CodecInfo(
            record.kind, record.nlist, record.groups, record.sha256, record.groups_sha256
        )
        self.codec = Codec.load(self.shard_dir, info, self.manifest.dim)
        shards = {
            s.shard_id: SealedShard(self.directory, s, self.codec, self.manifest.dim)
            for s in self.manifest.shards
        }
        for addr, shard_id in self.table.sealed_tombstones():
            if shard_id in shards:
                shards[shard_id].tombstones = np.append(shards[shard_id].tombstones, addr)
        placement = self._placement(shards)
        for shard_id, shard in shards.items():
            shard.set_tombstones(shard.tombstones)
            shard.install(shard.open_index(placement[shard_id]), placement[shard_id])
        self.sealed = shards

    def _placement(self, shards: dict[int, SealedShard]) -> dict[int, str]:
        heat = self.heat.snapshot()
        ram = None if self.ram_bytes is None else max(0, self.ram_bytes - self.growing.nbytes)
        return place_shards(
            [(i, heat.get(i, 0.0), s.index_bytes) for i, s in shards.items()], self.gpu_bytes, ram
        )

    def load_growing(self, addrs: np.ndarray, vectors: np.ndarray) -> None:
        """Fill the growing shard from the slot table, skipping slots a sealed shard already
        holds (the table lags the manifest after a crash in the middle of a seal)."""
        if self.sealed:
            fresh = ~np.isin(addrs, np.concatenate([s.addrs for s in self.sealed.values()]))
            addrs, vectors = addrs[fresh], vectors[fresh]
        self.growing.add(addrs, vectors)

    def iter_live_vectors(self, batch: int = 65_536):  # -> Iterator[tuple[ndarray, ndarray]]
        """(addresses, full-precision vectors) of every live slot, in chunks: the growing
        shard's, then each sealed shard's read from its .vec file without its tombstones."""
        addrs, vectors = self.growing.snapshot()
        if len(addrs):
            yield addrs, vectors
        for _, shard in sorted(self.sealed.items()):
            for start in range(0, len(shard), batch):
                stop = min(len(shard), start + batch)
                keep = ~np.isin(shard.addrs[start:stop], shard.tombstones)
                yield shard.addrs[start:stop][keep], shard.all_vectors(start, stop)[keep]

    def live_count(self) -> int:
        return len(self.growing) + sum(len(s) - len(s.tombstones) for s in self.sealed.values())

    # -- writes (the caller holds the write lock) ----------------------------------------
    def add(self, addrs: np.ndarray, vectors: np.ndarray) -> None:
        self.growing.add(addrs, vectors)

    def remove(self, addrs: np.ndarray) -> None:
        """Drop from the growing shard; tombstone inside sealed shards (until compaction)."""
        if not len(addrs):
            return
        self.growing.remove(addrs)
        for shard in self.sealed.values():
            hit = addrs[np.isin(addrs, shard.addrs)]
            if len(hit):
                shard.set_tombstones(np.concatenate([shard.tombstones, hit]))

    # -- search (the caller holds the read lock) -----------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        nprobe: int | None = None,
        refine_factor: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over the growing shard (exact) merged with the routed sealed shards' top-k.
        Large batches go in chunks of QUERY_CHUNK, which bounds the candidates held at once."""
        if not self.sealed:
            return self.growing.search(queries, k, allowed)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        selector = None if allowed is None else faiss.IDSelectorBatch(allowed)
        parts = [
            self._search_sealed(
                queries[i : i + QUERY_CHUNK],
                k,
                selector,
                nprobe,
                refine_factor or self.config.refine_factor,
            )
            for i in range(0, len(queries), QUERY_CHUNK)
        ]
        scores, addrs = (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
        )
        if len(self.growing):
            scores, addrs = merge_topk(
                [self.growing.search(queries, k, allowed), (scores, addrs)], k
            )
        return scores, addrs

    def _search_sealed(
        self,
        queries: np.ndarray,
        k: int,
        selector: faiss.IDSelector | None,
        nprobe: int | None,
        refine_factor: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        nprobe = min(nprobe or self.config.nprobe, self.codec.nlist)
        coarse, lists = self.codec.route(queries, nprobe)
        groups = np.unique(self.codec.groups[lists])
        targets = [s for s in self.sealed.values() if s.group in groups]
        refine = self.codec.kind == "ivf_pq"
        kk = k * refine_factor if refine else k
        args = (queries, kk, lists, coarse, selector)
        if len(targets) > 1:
            # Shards in parallel, each searched single-threaded: one OpenMP team per shard
            # call would pay a barrier per shard, and stragglers on a busy machine.
            results = self._pool.map(lambda s: s.search(*args), targets)
        else:  # one shard: FAISS spreads the queries over the cores itself
            results = (s.search(*args) for s in targets)
        pending: list[tuple[np.ndarray, ...]] = []
        probes: dict[int, int] = {}
        fast = total = disk_bytes = 0
        for i, (shard, (scores, addrs, scanned, n_probes)) in enumerate(
            zip(targets, results, strict=True)
        ):
            # merged MERGE_BATCH shards at a time: few sorts, and a bounded candidate set
            pending.append((scores, addrs, np.full(addrs.shape, i, dtype=np.int32)))
            if len(pending) > MERGE_BATCH:
                pending = [merge_topk(pending, kk)]
            probes[shard.shard_id] = n_probes
            total += n_probes
            if shard.tier == "disk":
                disk_bytes += scanned
            else:
                fast += n_probes
        best = merge_topk(pending, kk)
        if refine:
            scores, addrs, read = self._refine(queries, k, targets, best[1], best[2])
            disk_bytes += read
        else:
            scores, addrs = best[0], best[1]
        self.heat.record(len(queries), probes)
        with self._counters_lock:
            self.counters["probes_fast"] += fast
            self.counters["probes_total"] += total
            self.counters["disk_bytes_read"] += disk_bytes
        return scores, addrs

    def _refine(
        self,
        queries: np.ndarray,
        k: int,
        shards: list[SealedShard],
        addrs: np.ndarray,
        owner: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Re-rank IVF-PQ candidates exactly, as FAISS IndexRefine does: the k * refine_factor
        best by PQ score over all shards (one codebook, so their scores compare) get their
        full-precision vectors read from their shard's .vec file, a bounded chunk at a time.
        Returns (scores, addresses, bytes read)."""
        exact = np.full(addrs.shape, -np.inf, dtype=np.float32)
        read = 0
        for i, shard in enumerate(shards):
            rows, cols = np.nonzero((owner == i) & (addrs >= 0))
            for start in range(0, len(rows), REFINE_CHUNK_ROWS):
                r, c = (
                    rows[start : start + REFINE_CHUNK_ROWS],
                    cols[start : start + REFINE_CHUNK_ROWS],
                )
                vectors = shard.vectors_of(addrs[r, c])
                exact[r, c] = np.einsum("ij,ij->i", vectors, queries[r])
                read += vectors.nbytes
        scores, addrs = merge_topk([(exact, np.where(np.isfinite(exact), addrs, -1))], k)
        return scores, addrs, read

    def needs_rebalance(self) -> bool:
        every = self.config.rebalance_every
        return bool(every and self.sealed and self.heat.queries - self._last_rebalance >= every)

    # -- tiers -------------------------------------------------------------------------
    def rebalance(self) -> dict[int, str]:
        """Move shards between tiers by heat within the budgets; each move is one brief swap
        under the write lock (the index file is read before it), so readers barely wait."""
        with self.maintenance:
            self._last_rebalance = self.heat.queries
            placement = self._placement(self.sealed)
            order = sorted(placement, key=lambda i: TIERS.index(placement[i]), reverse=True)
            moved = {}
            for shard_id in order:  # demotions (to disk) first, so RAM frees before it fills
                shard = self.sealed.get(shard_id)
                tier = placement[shard_id]
                if shard is None or shard.tier == tier:
                    continue
                loaded = shard.open_index(tier)
                with self.lock.write():
                    shard.install(loaded, tier)
                moved[shard_id] = tier
            if moved:
                logger.info("rebalance moved %d shards: %s", len(moved), moved)
            if not self.read_only:
                with self.lock.write():
                    self.write_manifest(new_generation=False)
            return moved

    def write_manifest(self, new_generation: bool, **changes: Any) -> None:
        """Record the sealed shards with their tiers and heat (and any `changes`) atomically.
        A new generation means the set of sealed shards changed; readers then reload."""
        heat = self.heat.snapshot()
        shards = tuple(
            replace(s.info, tier=s.tier, heat=round(heat.get(i, 0.0), 3))
            for i, s in sorted(self.sealed.items())
        )
        generation = self.manifest.generation + int(new_generation)
        self.manifest = replace(self.manifest, generation=generation, shards=shards, **changes)
        write_manifest(self.directory, self.manifest)

    def stats(self) -> dict[str, Any]:
        heat = self.heat.snapshot()
        shards = [
            {
                "shard_id": 0,
                "kind": "flat",
                "tier": "ram",
                "vectors": len(self.growing),
                "bytes": self.growing.nbytes,
                "tombstone_ratio": 0.0,
                "heat": None,
            }
        ]
        vector_files = 0
        for i, s in sorted(self.sealed.items()):
            held = s.index_bytes if s.tier != "disk" else s.paths["faiss"].stat().st_size
            vector_files += s.paths["vec"].stat().st_size
            shards.append(
                {
                    "shard_id": i,
                    "kind": s.kind,
                    "tier": s.tier,
                    "group": s.group,
                    "vectors": len(s),
                    "bytes": held,
                    "tombstone_ratio": len(s.tombstones) / max(1, len(s)),
                    "heat": round(heat.get(i, 0.0), 3),
                }
            )
        tiers = {t: {"shards": 0, "bytes": 0} for t in TIERS}
        for s in shards:
            tiers[s["tier"]]["shards"] += 1
            tiers[s["tier"]]["bytes"] += s["bytes"]
        tiers["disk"]["bytes"] += vector_files  # full-precision copies, read for re-ranking
        with self._counters_lock:
            counters = dict(self.counters)
        record = self.manifest.codec
        return {
            "shards": shards,
            "tiers": tiers,
            "budgets": {"ram_bytes": self.ram_bytes, "gpu_bytes": self.gpu_bytes},
            "fast_tier_hit_ratio": (
                counters["probes_fast"] / counters["probes_total"]
                if counters["probes_total"]
                else None
            ),
            "disk_bytes_read": counters["disk_bytes_read"],
            "probes": counters["probes_total"],
            "index": {
                **self.config.to_dict(),
                "kind_chosen": record.kind if record else None,
                "nlist_chosen": record.nlist if record else None,
                "reason": record.reason if record else "no sealed shard yet: exact search",
            },
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for shard in self.sealed.values():
            shard.close()
