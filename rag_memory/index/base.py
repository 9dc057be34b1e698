"""The one interface every shard answers, the growing (exact) shard and sealed (IVF) ones alike.

`TieredIndex` searches, counts and reports its shards through this interface only, so it
treats them alike: a filter is always an address array (each shard builds the FAISS selector
its own index needs), a query batch's routing is computed once by the router and handed to
every shard (the growing shard, an exact scan, ignores it), and every search answers a
`ShardHits`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

TIERS = ("gpu", "ram", "disk")  # fastest first; the manifest and placement use this order
FLAT = "flat"  # an exact scan: the growing shard, or the plan for a small memory


@dataclass(frozen=True)
class Route:
    """The router's coarse assignment of a query batch: each query's nprobe nearest
    partitions (global ids) and its similarity to each of their centroids, both (nq, nprobe)."""

    lists: np.ndarray
    coarse: np.ndarray


class ShardHits(NamedTuple):
    """One shard's top-k for a query batch."""

    scores: np.ndarray  # (nq, k) float32, best first
    addrs: np.ndarray  # (nq, k) int64 slot addresses, -1 where fewer than k were found
    bytes_scanned: int  # bytes of codes read to answer (disk traffic for a disk-tier shard)
    probes: int  # non-empty partitions probed (0 for an exact scan)


class Shard(Protocol):
    """What the tiered index asks of a shard."""

    shard_id: int
    kind: str  # "flat" (the growing shard), or one of codecs.SEALED_KINDS
    tier: str  # one of TIERS

    def __len__(self) -> int:
        """Vectors stored, tombstones included."""
        ...

    @property
    def live_count(self) -> int:
        """Vectors stored that are not tombstoned."""
        ...

    @property
    def held_bytes(self) -> int:
        """Bytes the shard holds in its tier now (its file size when on disk)."""
        ...

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, route: Route | None
    ) -> ShardHits:
        """Top-k of `queries` among this shard's live vectors, only addresses in `allowed`
        when given (live slots matching a filter)."""
        ...

    def stats(self) -> dict[str, Any]:
        """The shard's line in `Memory.stats()["shards"]` (heat is added by the index)."""
        ...


@dataclass(frozen=True)
class TableSnapshot:
    """The slot table as the index reads it, at one instant (one read transaction)."""

    version: int  # the memory-wide write counter
    generation: int  # the manifest generation the table's shard column reflects
    live: int  # live slots
    growing_addrs: np.ndarray  # live growing-shard slots added after the version asked for
    growing_vectors: np.ndarray
    deleted: np.ndarray  # addresses deleted after it (a full load: all not yet retired)


class ShardTable(Protocol):
    """The few calls the tiered index makes on the slot table (`store.SlotTable` answers
    them): consistent snapshots to load and catch up from, and the seal record. A test can
    build an index over any object that has them."""

    path: Path  # the table's file, named in errors

    def version(self) -> int:
        """The memory-wide write counter."""
        ...

    def counters(self) -> tuple[int, int]:
        """(version, generation) at one instant."""
        ...

    def commit_mark(self) -> Hashable:
        """A mark of the commits this thread can see: equal marks from one thread mean no
        commit in between (cheaper than `counters`)."""
        ...

    def snapshot(self, since_version: int = -1) -> TableSnapshot:
        """Counters, growing vectors and deletions after `since_version`, at one instant."""
        ...

    def apply_sealing(
        self, generation: int, shards: dict[int, np.ndarray], live_shards: Sequence[int]
    ) -> None:
        """Record that `shards` hold those addresses now, as of manifest `generation`."""
        ...
