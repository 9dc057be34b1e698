"""Sealing and compaction: moving vectors from the growing shard into sealed IVF shards, and
rewriting sealed shards without their tombstones (Milvus's seal / compaction of segments).

Crash safety comes from the order of steps: shard files are written and fsynced first; the
manifest (replaced atomically) is the commit point; the slot table's `shard` column and the
growing vectors in SQLite are updated after it. A crash before the manifest leaves orphan
files (deleted on the next open); a crash after it leaves the slot table one generation behind,
which `reconcile` brings up to date from the manifest on the next open. The heavy work (k-means,
encoding, writing) runs without the memory's lock; only the swap takes the write lock.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ..manifest import CodecRecord, ShardInfo
from .codec import CODEC_FILE, GROUPS_FILE, MIN_POINTS_PER_CENTROID, Codec
from .plan import choose_index
from .sealed import SealedShard, merge_shards, remove_shard_files, write_shard
from .tiered import TieredIndex

logger = logging.getLogger(__name__)

UNLIMITED_BYTES = 1 << 60  # "no RAM budget" for the index plan


def _train_codec(index: TieredIndex, vectors: np.ndarray) -> tuple[Codec, CodecRecord]:
    """Train the router (and PQ codebook) on the first seal, with the kind, nlist and PQ size
    of `choose_index` for the expected size and the RAM budget unless IndexConfig fixes them.
    Sealed shards are always IVF: a plan of "flat" (tiny memories) becomes IVF-Flat."""
    cfg, dim = index.config, index.manifest.dim
    expected = max(len(vectors), cfg.expected_vectors or 0)
    plan = choose_index(expected, dim, index.ram_bytes or UNLIMITED_BYTES)
    kind = cfg.kind if cfg.kind != "auto" else ("ivf_pq" if plan.kind == "ivf_pq" else "ivf_flat")
    nlist = cfg.nlist or plan.nlist or int(4 * math.sqrt(expected))
    nlist = max(1, min(nlist, len(vectors) // MIN_POINTS_PER_CENTROID))
    codec = Codec.train(
        vectors,
        kind,
        nlist,
        cfg.pq_m or plan.pq_m or max(1, dim // 8),
        cfg.shard_groups or max(1, nlist // 16),
    )
    info = codec.save(index.shard_dir)
    reason = (
        f"{kind} ({'set in IndexConfig' if cfg.kind != 'auto' else 'auto'}); plan for "
        f"{expected:,} vectors: {plan.reason}; trained {codec.nlist} partitions in "
        f"{codec.n_groups} groups on {len(vectors):,} vectors, nprobe {cfg.nprobe}"
    )
    return codec, CodecRecord(
        info.kind, info.nlist, info.groups, info.sha256, info.groups_sha256, reason
    )


def _next_shard_id(index: TieredIndex) -> int:
    return max(index.sealed, default=0) + 1


def _open_new(index: TieredIndex, infos: list[ShardInfo], codec: Codec) -> list[SealedShard]:
    """Open freshly written shards in RAM if the budget has room, else on disk."""
    shards = []
    used = sum(s.index_bytes for s in index.sealed.values() if s.tier != "disk")
    for info in infos:
        shard = SealedShard(index.directory, info, codec, index.manifest.dim)
        fits = (
            index.ram_bytes is None
            or used + shard.index_bytes + index.growing.nbytes <= index.ram_bytes
        )
        tier = "ram" if fits else "disk"
        used += shard.index_bytes if fits else 0
        shard.install(shard.open_index(tier), tier)
        shards.append(shard)
    return shards


def _commit(
    index: TieredIndex, new: list[SealedShard], retired: list[int], record: CodecRecord | None
) -> None:
    """Swap new shards in and retired ones out; write the manifest, then the slot table.
    The caller holds the write lock. Slots deleted while the new shards were being built
    become tombstones of the new shards."""
    for shard in new:
        if retired:  # a merge: deletions since its snapshot sit on the retired shards
            tombs = np.concatenate([index.sealed[i].tombstones for i in retired])
            gone = tombs[np.isin(tombs, shard.addrs)]
        else:  # a seal: deletions since the snapshot already left the growing shard
            gone = shard.addrs[~np.isin(shard.addrs, index.growing.addresses)]
            index.growing.remove(shard.addrs)
        shard.set_tombstones(gone)
    for shard in new:
        index.sealed[shard.shard_id] = shard
    closing = [index.sealed.pop(i) for i in retired]
    index.write_manifest(new_generation=True, **({"codec": record} if record else {}))
    index.table.apply_sealing(
        index.manifest.generation, {s.shard_id: s.addrs for s in new}, list(index.sealed)
    )
    index.heat.forget(retired)
    for shard in closing:
        shard.close()
        remove_shard_files(index.shard_dir, shard.shard_id)


def seal(index: TieredIndex, force: bool = False) -> int:
    """Seal the growing shard if it passed the threshold (or `force`); returns vectors sealed."""
    with index.maintenance:
        with index.lock.read():
            addrs, vectors = index.growing.snapshot()
        if not len(addrs) or (not force and len(addrs) < index.config.seal_threshold):
            return 0
        record = None
        codec = index.codec
        if codec is None:
            codec, record = _train_codec(index, vectors)
        groups = codec.groups[codec.assign(vectors)]
        next_id = _next_shard_id(index)
        infos = []
        for j, group in enumerate(np.unique(groups)):
            mask = groups == group
            infos.append(
                write_shard(
                    index.shard_dir, next_id + j, codec, int(group), addrs[mask], vectors[mask]
                )
            )
        new = _open_new(index, infos, codec)
        with index.lock.write():
            index.codec = codec
            _commit(index, new, [], record)
        logger.info("sealed %d vectors into %d shards", len(addrs), len(new))
        _merge_crowded_groups(index)
        return len(addrs)


def _merge_group(index: TieredIndex, group: int, shard_ids: list[int]) -> None:
    """Rewrite a group's shards as one, without tombstones. Extra RAM: the merged shard."""
    info = merge_shards(
        index.shard_dir,
        _next_shard_id(index),
        index.codec,
        group,
        [index.sealed[i] for i in shard_ids],
    )
    new = _open_new(index, [info], index.codec)
    with index.lock.write():
        _commit(index, new, shard_ids, None)


def _merge_crowded_groups(
    index: TieredIndex, min_shards: int | None = None, min_tombstone_ratio: float = 1.0
) -> int:
    by_group: dict[int, list[int]] = {}
    for shard_id, shard in sorted(index.sealed.items()):
        by_group.setdefault(shard.group, []).append(shard_id)
    merged = 0
    threshold = min_shards or index.config.merge_threshold
    for group, ids in by_group.items():
        dirty = any(
            len(index.sealed[i].tombstones) >= min_tombstone_ratio * max(1, len(index.sealed[i]))
            for i in ids
        )
        if len(ids) >= threshold or dirty:
            _merge_group(index, group, ids)
            merged += 1
    return merged


def compact(index: TieredIndex) -> dict[str, int]:
    """Seal everything, then rewrite every group that has several shards or any tombstone."""
    sealed = seal(index, force=True)
    with index.maintenance:
        merged = _merge_crowded_groups(index, min_shards=2, min_tombstone_ratio=1e-12)
    return {"sealed": sealed, "groups_rewritten": merged}


def reconcile(index: TieredIndex, directory: Path) -> None:
    """On open (writer): delete files no manifest names, and bring the slot table up to the
    manifest's generation if a crash came between the two."""
    keep = {f"{s.shard_id:06d}" for s in index.manifest.shards}
    if index.manifest.codec is not None:
        keep |= {name.split(".")[0] for name in (CODEC_FILE, GROUPS_FILE)}
    for path in directory.iterdir():
        stem = path.name.split(".")[0]
        if stem not in keep:
            logger.warning("removing orphan file %s (left by an interrupted seal/compaction)", path)
            path.unlink()
    if index.table.generation() != index.manifest.generation:
        logger.warning(
            "slot table is behind the manifest (generation %d < %d): reconciling",
            index.table.generation(),
            index.manifest.generation,
        )
        index.table.apply_sealing(
            index.manifest.generation,
            {i: s.addrs for i, s in index.sealed.items()},
            list(index.sealed),
        )
