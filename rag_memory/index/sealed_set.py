"""SealedSet: a memory's sealed shards with their router, their heat and the manifest that
records them. It opens them, places them in tiers by heat within the budgets, swaps shards in
and out (writing the manifest, the commit point of every seal and merge) and reports them.
`TieredIndex` drives it; nothing else touches its state.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnsyncedReplaceError
from ..fsutil import fsync_dir
from ..locks import ReadWriteLock
from ..manifest import Manifest, RouterRecord, ShardInfo, write_manifest
from .base import TIERS
from .budgets import Budgets
from .placement import HeatTracker, place_shards
from .router import Router, RouterInfo
from .sealed import SealedShard
from .shard_files import SHARDS_DIR

logger = logging.getLogger(__name__)


class SealedSet:
    """The sealed shards listed in one manifest, open in their tiers."""

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        heat_half_life: int,
        deleted: np.ndarray,
        budgets: Budgets,
        growing_bytes: int,
    ) -> None:
        """Open the manifest's shards, each with the `deleted` addresses it holds as its
        tombstones (found by address: after a crash between the manifest and slot-table
        commits the table's shard ids are the previous generation's), placed by their
        recorded heat within `budgets` less the growing shard's RAM. A shard that fails to
        open closes the ones opened before it."""
        self._directory = directory
        self._manifest = manifest
        self._budgets = budgets
        self._heat = HeatTracker(heat_half_life, {s.shard_id: s.heat for s in manifest.shards})
        self._router: Router | None = None
        self._shards: dict[int, SealedShard] = {}
        record = manifest.router
        if record is None:
            return
        info = RouterInfo.from_record(record)
        self._router = Router.load(directory / SHARDS_DIR, info, manifest.dim)
        try:
            for s in manifest.shards:
                shard = SealedShard(directory, s, self._router, manifest.dim)
                self._shards[s.shard_id] = shard
                shard.set_tombstones(shard.addrs[np.isin(shard.addrs, deleted)])
            placement = self._placement(self._shards, growing_bytes)
            for shard_id, shard in self._shards.items():
                shard.install(shard.open_index(placement[shard_id]), placement[shard_id])
        except BaseException:
            self.close()
            raise

    # -- reading -----------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def router(self) -> Router | None:
        return self._router

    @property
    def shards(self) -> list[SealedShard]:
        """The shards, by id."""
        return [s for _, s in sorted(self._shards.items())]

    def __len__(self) -> int:
        return len(self._shards)

    def __getitem__(self, shard_id: int) -> SealedShard:
        return self._shards[shard_id]

    def all_addrs(self) -> np.ndarray:
        """Every address a sealed shard holds, tombstones included."""
        return np.concatenate([s.addrs for s in self._shards.values()] or [np.empty(0, np.int64)])

    def next_shard_id(self) -> int:
        return max(self._shards, default=0) + 1

    @property
    def queries_seen(self) -> int:
        return self._heat.queries

    def record_probes(self, n_queries: int, per_shard: dict[int, int]) -> None:
        self._heat.record(n_queries, per_shard)

    # -- placement ---------------------------------------------------------------------
    def _placement(
        self,
        shards: dict[int, SealedShard],
        growing_bytes: int,
        taken: dict[str, int] | None = None,
    ) -> dict[int, str]:
        """Tiers for `shards` by heat (`place_shards`) within what the budgets leave after
        the growing shard's RAM and the bytes `taken` per tier by shards placed already."""
        taken = taken or {}
        heat = self._heat.snapshot()
        ram = self._budgets.ram_bytes
        if ram is not None:
            ram = max(0, ram - growing_bytes - taken.get("ram", 0))
        return place_shards(
            [(i, heat.get(i, 0.0), s.index_bytes) for i, s in shards.items()],
            max(0, self._budgets.gpu_bytes - taken.get("gpu", 0)),
            ram,
        )

    def open_new(
        self, infos: list[ShardInfo], router: Router, growing_bytes: int
    ) -> list[SealedShard]:
        """Open freshly written shards where `place_shards` puts them in the budget that the
        shards in place leave (new shards have no heat yet; the next rebalance may move them)."""
        new: dict[int, SealedShard] = {}
        try:
            for info in infos:
                new[info.shard_id] = SealedShard(self._directory, info, router, self._manifest.dim)
            taken = dict.fromkeys(TIERS, 0)
            for shard in self._shards.values():
                taken[shard.tier] += shard.index_bytes
            placement = self._placement(new, growing_bytes, taken)
            for shard_id, shard in new.items():
                shard.install(shard.open_index(placement[shard_id]), placement[shard_id])
        except BaseException:
            for shard in new.values():
                shard.close()
            raise
        return list(new.values())

    def rebalance(self, lock: ReadWriteLock, growing_bytes: int) -> dict[int, str]:
        """Move shards between tiers by heat within the budgets. Each move reads the index
        first, then swaps it in under `lock` held for writing, so readers barely wait;
        demotions (to disk) go first, so RAM frees before it fills. Returns the moves."""
        placement = self._placement(self._shards, growing_bytes)
        moved = {}
        for shard_id in sorted(placement, key=lambda i: TIERS.index(placement[i]), reverse=True):
            shard, tier = self._shards[shard_id], placement[shard_id]
            if shard.tier == tier:
                continue
            loaded = shard.open_index(tier)
            with lock.write():
                shard.install(loaded, tier)
            moved[shard_id] = tier
        if moved:
            logger.info("rebalance moved %d shards: %s", len(moved), moved)
        return moved

    # -- changes (the caller holds the index's write lock) ------------------------------
    def tombstone(self, removed: np.ndarray) -> bool:
        """Deleted addresses stay in their shard's files, hidden, until compaction. Returns
        whether any shard got a new tombstone."""
        changed = False
        for shard in self._shards.values():
            hit = removed[np.isin(removed, shard.addrs)]
            if len(hit):
                shard.set_tombstones(np.concatenate([shard.tombstones, hit]))
                changed = True
        return changed

    def swap(
        self,
        new: list[SealedShard],
        retired: Sequence[int],
        router: Router,
        record: RouterRecord | None,
    ) -> list[SealedShard]:
        """Put `new` shards in and `retired` ones out and commit that in a new manifest
        generation (with the router's `record` on the first seal). Returns the retired
        shards, for the caller to close and delete once the slot table follows. If the
        manifest cannot be written, nothing changed, on disk or here; if it was written but
        its directory not synced (UnsyncedReplaceError), the swap stands, here as on disk."""
        shards = dict(self._shards)
        for shard in new:
            shards[shard.shard_id] = shard
        closing = [shards.pop(i) for i in retired]
        try:
            self._write(shards, new_generation=True, **({"router": record} if record else {}))
        except UnsyncedReplaceError:  # the new manifest is in place: so is the swap
            self._adopt(shards, router, retired)
            raise
        self._adopt(shards, router, retired)
        return closing

    def _adopt(
        self, shards: dict[int, SealedShard], router: Router, retired: Sequence[int]
    ) -> None:
        self._shards, self._router = shards, router
        self._heat.forget(retired)

    def write_manifest(self, new_generation: bool, **changes: Any) -> None:
        """Record the shards with their tiers and heat (and any `changes`) atomically. A new
        generation means the set of sealed shards changed; readers then reload."""
        self._write(self._shards, new_generation, **changes)

    def _write(self, shards: dict[int, SealedShard], new_generation: bool, **changes: Any) -> None:
        """Write the manifest of `shards`, then (only once it is on disk) hold it as ours."""
        heat = self._heat.snapshot()
        infos = tuple(
            replace(s.info, tier=s.tier, heat=round(heat.get(i, 0.0), 3))
            for i, s in sorted(shards.items())
        )
        generation = self._manifest.generation + int(new_generation)
        manifest = replace(self._manifest, generation=generation, shards=infos, **changes)
        try:
            write_manifest(self._directory, manifest)
        except UnsyncedReplaceError:
            self._manifest = manifest  # it is the file in place
            raise
        self._manifest = manifest

    def sync_manifest(self) -> None:
        """Make the manifest in place durable (after an UnsyncedReplaceError)."""
        fsync_dir(self._directory)

    # -- reporting and closing ---------------------------------------------------------
    def stats(self) -> list[dict[str, Any]]:
        """Each shard's stats line with its heat."""
        heat = self._heat.snapshot()
        return [{**s.stats(), "heat": round(heat.get(s.shard_id, 0.0), 3)} for s in self.shards]

    def vector_file_bytes(self) -> int:
        """Bytes of the full-precision copies on disk (re-ranking and compaction read them)."""
        return sum(s.vec_bytes for s in self._shards.values())

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()
