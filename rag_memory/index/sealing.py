"""Sealing and compaction, the pure parts: training the router, cutting vectors into group
shards, choosing which groups to merge, and what an interrupted seal left behind (Milvus seals
and compacts segments the same way).

Crash safety comes from the order of steps, which `TieredIndex` follows: shard files are
written and fsynced first; the manifest (replaced atomically) is the commit point; the slot
table's `shard` column and the growing vectors in SQLite are updated after it. A crash before
the manifest leaves orphan files (`orphan_files`, deleted on the next open); a crash after it
leaves the slot table one generation behind, brought up to date from the manifest on the next
open. These functions take what they need and return what they built; the index swaps it in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..manifest import Manifest, RouterRecord, ShardInfo
from .config import IndexConfig
from .plan import choose_router
from .recall_curve import estimate_recall_curve, nprobe_for
from .router import GROUPS_FILE, ROUTER_FILE, Router, training_sample
from .sealed import SealedShard
from .shard_files import write_shard

logger = logging.getLogger(__name__)


def train_router(
    vectors: np.ndarray, config: IndexConfig, ram_bytes: int | None, shard_dir: Path
) -> tuple[Router, RouterRecord]:
    """Train and save the router on the first seal's vectors, as `plan.choose_router` says,
    on a uniform random sample of them, and estimate its recall at each nprobe on it."""
    choice = choose_router(len(vectors), vectors.shape[1], config, ram_bytes)
    sample = training_sample(vectors, choice.train_points)
    router = Router.train(sample, choice.kind, choice.nlist, choice.pq_m, choice.groups)
    curve = estimate_recall_curve(router, sample)
    info = router.save(shard_dir)
    reason = (
        f"{choice.reason}; trained {router.nlist} partitions in {router.n_groups} groups on "
        f"{len(sample):,} of {len(vectors):,} vectors; recall target {config.recall_target} "
        f"-> nprobe {nprobe_for(curve, config.recall_target)} by the recall curve"
    )
    record = RouterRecord(
        info.kind, info.nlist, info.groups, info.sha256, info.groups_sha256, reason, curve
    )
    return router, record


def write_group_shards(
    shard_dir: Path, first_id: int, router: Router, addrs: np.ndarray, vectors: np.ndarray
) -> list[ShardInfo]:
    """One durably written shard per partition group the vectors fall in, ids from `first_id`."""
    groups = router.groups[router.assign(vectors)]
    infos = []
    for j, group in enumerate(np.unique(groups)):
        mask = groups == group
        infos.append(
            write_shard(shard_dir, first_id + j, router, int(group), addrs[mask], vectors[mask])
        )
    return infos


def groups_to_merge(
    shards: Mapping[int, SealedShard], min_shards: int, min_tombstone_ratio: float
) -> dict[int, list[int]]:
    """Group -> its shard ids, for groups with at least `min_shards` shards or a shard whose
    tombstones reach `min_tombstone_ratio` of its vectors."""
    by_group: dict[int, list[int]] = {}
    for shard_id, shard in sorted(shards.items()):
        by_group.setdefault(shard.group, []).append(shard_id)
    return {
        group: ids
        for group, ids in by_group.items()
        if len(ids) >= min_shards
        or any(
            len(shards[i].tombstones) >= min_tombstone_ratio * max(1, len(shards[i])) for i in ids
        )
    }


def orphan_files(shard_dir: Path, manifest: Manifest) -> list[Path]:
    """Files under shards/ that the manifest does not name (left by an interrupted seal or
    compaction, which writes its files before the manifest that names them)."""
    keep = {f"{s.shard_id:06d}" for s in manifest.shards}
    if manifest.router is not None:
        keep |= {name.split(".")[0] for name in (ROUTER_FILE, GROUPS_FILE)}
    return sorted(p for p in shard_dir.iterdir() if p.name.split(".")[0] not in keep)
