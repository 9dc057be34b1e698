"""Search several shards and merge their per-shard top-k into one exact top-k."""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from .base import Shard


def search_shards(shards: Sequence[Shard], queries: np.ndarray, k: int,
                  allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over the union of `shards`: every shard returns its own top-k, and FAISS's
    ResultHeap (faiss/contrib, the same merge `IndexShards` does) keeps the best k overall."""
    nq = len(queries)
    if len(shards) == 1:
        return shards[0].search(queries, k, allowed)
    heap = faiss.ResultHeap(nq, k, keep_max=True)
    for shard in shards:
        if len(shard):
            scores, addrs = shard.search(queries, k, allowed)
            heap.add_result(scores, addrs)
    heap.finalize()
    return heap.D, heap.I
