"""The growing shard: an exact in-RAM IndexFlatIP for new slots, keyed by slot address.

Its durable copy is the slot table (vectors are committed there first), so it is rebuilt on
open and never written to disk itself, as Milvus does with growing segments. Addresses are
kept in a numpy array beside the flat index (position -> address) rather than in an
IndexIDMap: translating ten labels with numpy costs microseconds, while IndexIDMap's OpenMP
loop costs milliseconds per call on a busy 2-core machine. IndexFlat.remove_ids keeps the
order of the remaining rows, so both arrays are compacted the same way and no slot's address
ever changes.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from ..store.slot_table import GROWING_SHARD
from .base import Route, ShardHits


class GrowingShard:
    """Exact inner-product search over the slots not yet sealed (a `base.Shard`)."""

    shard_id = GROWING_SHARD
    kind = "flat"
    tier = "ram"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._index = faiss.IndexFlatIP(dim)
        self._addrs = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return self._index.ntotal

    @property
    def live_count(self) -> int:
        return self._index.ntotal  # a delete leaves the growing shard at once

    @property
    def held_bytes(self) -> int:
        return self.bytes_for(self._index.ntotal)

    def bytes_for(self, n: int) -> int:
        """RAM that `n` vectors take here (float32 codes and an int64 address each)."""
        return n * (4 * self.dim + 8)

    @property
    def addresses(self) -> np.ndarray:
        return self._addrs

    @property
    def faiss_index(self) -> faiss.IndexFlatIP:
        """The FAISS index searched (advanced: read it, e.g. to time raw FAISS beside the
        memory; row i holds the slot at `addresses[i]`). Writing to it breaks the memory."""
        return self._index

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of (addresses, vectors), for sealing them elsewhere."""
        n = self._index.ntotal
        vectors = faiss.rev_swig_ptr(self._index.get_xb(), n * self.dim).reshape(n, self.dim)
        return self._addrs.copy(), vectors.copy()

    def vectors_of(self, addrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which of `addrs` this shard holds, their vectors), without copying the rest."""
        order = np.argsort(self._addrs, kind="stable")
        at = np.minimum(np.searchsorted(self._addrs, addrs, sorter=order), max(len(order) - 1, 0))
        held = np.zeros(len(addrs), dtype=bool)
        if len(order):
            held = self._addrs[order[at]] == addrs
        rows = order[at[held]]
        n = self._index.ntotal
        table = faiss.rev_swig_ptr(self._index.get_xb(), n * self.dim).reshape(n, self.dim)
        return held, table[rows].copy()

    def add(self, addrs: np.ndarray, vectors: np.ndarray) -> None:
        if len(addrs):
            self._index.add(vectors)
            self._addrs = np.concatenate([self._addrs, np.asarray(addrs, dtype=np.int64)])

    def remove(self, addrs: np.ndarray) -> None:
        if not len(addrs):
            return
        drop = np.isin(self._addrs, addrs)
        if drop.any():
            self._index.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(drop).astype(np.int64)))
            self._addrs = self._addrs[~drop]

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        route: Route | None = None,
    ) -> ShardHits:
        """Exact top-k; `route` is ignored (every vector is scanned)."""
        params = None
        if allowed is not None:
            mask = np.isin(self._addrs, allowed)
            bitmap = np.packbits(mask, bitorder="little")  # must outlive the search below
            selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
            params = faiss.SearchParameters(sel=selector)
        scores, positions = self._index.search(queries, k, params=params)
        addrs = (
            np.where(positions >= 0, self._addrs[positions], -1) if len(self._addrs) else positions
        )
        return ShardHits(scores, addrs, self.held_bytes, 0)

    def stats(self) -> dict[str, Any]:
        return {
            "shard_id": self.shard_id,
            "sealed": False,
            "kind": self.kind,
            "tier": self.tier,
            "vectors": len(self),
            "bytes": self.held_bytes,
            "tombstone_ratio": 0.0,
        }
