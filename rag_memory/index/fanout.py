"""A routed query batch over sealed shards searched one by one (the GPU tier: each shard is its
own GPU index), their top-k merged exactly, and the exact re-ranking of IVF-PQ candidates with
full-precision vectors before the final cut, as FAISS IndexRefine does (shared with the
stacked CPU tiers, `stacked.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .base import Route, ShardHits
from .codecs import first_candidates, more_candidates, reranks
from .merge import merge_topk
from .router import Router
from .sealed import SealedShard

# Re-ranking reads candidate vectors in chunks of this many rows (~12 MiB at dim 384), so a big
# batch never holds all its candidates' full vectors at once.
REFINE_CHUNK_ROWS = 8192
MERGE_BATCH = 16  # shard results merged this many at a time: few sorts, bounded candidates

MapShards = Callable[
    [Callable[[SealedShard], ShardHits], Sequence[SealedShard]], Iterable[ShardHits]
]


@dataclass
class ProbeCounts:
    """What one batch probed: partitions per shard, how many in a fast tier, disk bytes."""

    per_shard: dict[int, int] = field(default_factory=dict)
    fast: int = 0
    total: int = 0
    disk_bytes: int = 0

    def add(self, other: ProbeCounts) -> None:
        self.per_shard.update(other.per_shard)  # each shard is searched by one path only
        self.fast += other.fast
        self.total += other.total
        self.disk_bytes += other.disk_bytes


def search_sealed(
    router: Router,
    shards: Iterable[SealedShard],
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray | None,
    route: Route,
    refine_factor: int,
    map_shards: MapShards,
) -> tuple[np.ndarray, np.ndarray, ProbeCounts]:
    """Top-k (scores, addresses) of `queries` over those of `shards` that hold a partition
    of `route` (the router's assignment, global partition ids).

    `map_shards(fn, shards)` runs `fn` on each shard; the index passes a thread pool's map
    when several shards are searched (each single-threaded: one OpenMP team per shard call
    would pay a barrier per shard, and stragglers on a busy machine) and plain `map` for one
    (FAISS then spreads the queries over the cores itself)."""
    routed = set(np.unique(router.groups[route.lists[route.lists >= 0]]).tolist())
    targets = [s for s in shards if s.group in routed]
    run = map_shards if len(targets) > 1 else map
    counts = ProbeCounts()

    def candidates(kk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The top kk over the routed shards: (scores, addresses, position in `targets`).
        `counts` are the last fetch's: a re-ranking search fetching more probes the same
        partitions for the same queries, which heat must count once."""
        nonlocal counts
        counts = ProbeCounts()
        results = run(lambda s: s.search(queries, kk, allowed, route), targets)
        pending: list[tuple[np.ndarray, ...]] = []
        for i, (shard, hits) in enumerate(zip(targets, results, strict=True)):
            pending.append((hits.scores, hits.addrs, np.full(hits.addrs.shape, i, np.int32)))
            if len(pending) > MERGE_BATCH:
                pending = [merge_topk(pending, kk)]
            counts.per_shard[shard.shard_id] = hits.probes
            counts.total += hits.probes
            if shard.tier == "disk":
                counts.disk_bytes += hits.bytes_scanned
            else:
                counts.fast += hits.probes
        if not pending:  # every routed group's shards are gone: nothing to merge
            addrs = np.full((len(queries), kk), -1, dtype=np.int64)
            return np.full(addrs.shape, -np.inf, dtype=np.float32), addrs, addrs
        scores, addrs, owner = merge_topk(pending, kk)
        return scores, addrs, owner

    if not reranks(router.kind, route.lists.shape[1], router.nlist):
        return (*candidates(k)[:2], counts)
    available = sum(len(s) for s in targets)
    kind = router.kind
    scores, addrs, read = rerank(kind, queries, k, refine_factor, available, targets, candidates)
    counts.disk_bytes += read
    return scores, addrs, counts


def rerank(
    kind: str,
    queries: np.ndarray,
    k: int,
    refine_factor: int,
    available: int,
    shards: Sequence[SealedShard],
    candidates: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, int]:
    """The exact top-k of a re-ranking search (`codecs.reranks`): `candidates(kk)` gives the
    best kk per query by the codec's scores (scores, addresses, each one's position in
    `shards`), never more than the `available` vectors; they are re-ranked exactly, and
    fetched again, more of them, while `codecs.more_candidates` says the top-k may be
    missing one. Returns (scores, addresses, bytes read from the .vec files)."""
    kk, read = first_candidates(kind, k, refine_factor, available), 0
    while True:
        fetched, addrs, owner = candidates(kk)
        scores, top, bytes_read = refine_exact(queries, k, shards, addrs, owner)
        read += bytes_read
        kk = more_candidates(kind, k, (fetched, addrs), scores, queries.shape[1], available)
        if not kk:
            return scores, top, read


def refine_exact(
    queries: np.ndarray, k: int, shards: Sequence[SealedShard], addrs: np.ndarray, owner: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Re-rank IVF-PQ candidates exactly: the k * refine_factor best by PQ score over all
    shards (one codebook, so their scores compare) get their full-precision vectors read from
    their shard's .vec file (`owner`: the position in `shards` of each candidate's shard, -1
    for padding), one read per shard in bounded chunks. Returns (scores, addresses, bytes read)."""
    exact = np.full(addrs.shape, -np.inf, dtype=np.float32)
    rows, cols = np.nonzero((owner >= 0) & (addrs >= 0))
    owners = owner[rows, cols]
    by_shard = np.argsort(owners, kind="stable")
    rows, cols, owners = rows[by_shard], cols[by_shard], owners[by_shard]
    bounds = np.searchsorted(owners, np.arange(len(shards) + 1))
    read = 0
    for i, shard in enumerate(shards):
        for start in range(int(bounds[i]), int(bounds[i + 1]), REFINE_CHUNK_ROWS):
            stop = min(int(bounds[i + 1]), start + REFINE_CHUNK_ROWS)
            r, c = rows[start:stop], cols[start:stop]
            vectors = shard.vectors_of(addrs[r, c])
            exact[r, c] = np.einsum("ij,ij->i", vectors, queries[r])
            read += vectors.nbytes
    scores, top = merge_topk([(exact, np.where(np.isfinite(exact), addrs, -1))], k)
    return scores, top, read
