"""The growing shard: the slots not yet sealed, in RAM, keyed by slot address.

Its durable copy is the slot table (vectors are committed there first), so it is rebuilt on
open and never written to disk itself, as Milvus does with growing segments.

Before the memory has a router (its first seal trains one) the shard is an exact IndexFlatIP:
below `seal_threshold` a scan is fast enough. Addresses are kept in a numpy array beside the
flat index (position -> address) rather than in an IndexIDMap: translating ten labels with
numpy costs microseconds, while IndexIDMap's OpenMP loop costs milliseconds per call on a busy
2-core machine. IndexFlat.remove_ids keeps the order of the remaining rows, so both arrays are
compacted the same way and no slot's address ever changes.

Once a router exists the shard is an IVF-Flat index over the router's own partitions (an
interim index on a growing segment, as Milvus builds one and Qdrant indexes a segment past its
indexing threshold): every write is assigned to its partition on add, and a search probes the
partitions the router chose for the sealed shards, so the growing shard costs what one more
shard of the same partitions costs instead of a scan of every vector it holds. Its ids are the
slot addresses, with a hash-table direct map (FAISS `DirectMap.Hashtable`) so a delete removes
its vectors without scanning every list and a multi-hop read reconstructs them. Probing every
partition (nprobe = nlist) is still an exact search.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from ..store.slot_table import GROWING_SHARD
from .base import FLAT, Route, ShardHits
from .codecs import IVF_FLAT
from .preassigned import PARALLEL_OVER_LISTS, flat_search, search_preassigned
from .router import Router


class GrowingShard:
    """Inner-product search over the slots not yet sealed (a `base.Shard`): exact until a
    router exists, then IVF-Flat over the router's partitions (module doc)."""

    shard_id = GROWING_SHARD
    tier = "ram"

    def __init__(self, dim: int, router: Router | None = None) -> None:
        self.dim = dim
        self._router: Router | None = None
        self._index: faiss.Index = faiss.IndexFlatIP(dim)
        self._addrs = np.empty(0, dtype=np.int64)
        if router is not None:
            self.index_with(router)

    def __len__(self) -> int:
        return self._index.ntotal

    @property
    def kind(self) -> str:
        return FLAT if self._router is None else IVF_FLAT

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
    def faiss_index(self) -> faiss.Index:
        """The FAISS index searched (advanced: read it, e.g. to time raw FAISS beside the
        memory; while flat, row i holds the slot at `addresses[i]`, and once indexed its ids
        are the addresses). Writing to it breaks the memory."""
        return self._index

    def index_with(self, router: Router) -> None:
        """Move the slots held into an IVF-Flat index over `router`'s partitions (once, when
        the first seal trained the router, or at open; the caller holds the write lock)."""
        if self._router is router:
            return
        addrs, vectors = self.snapshot()
        index = faiss.IndexIVFFlat(
            router.quantizer, self.dim, router.nlist, faiss.METRIC_INNER_PRODUCT
        )
        index.parallel_mode = PARALLEL_OVER_LISTS  # one index object for batches and singles
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        self._router, self._index = router, index  # the router keeps the quantizer alive
        self._addrs = np.empty(0, dtype=np.int64)
        self.add(addrs, vectors)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of (addresses, vectors), for sealing them elsewhere."""
        if self._router is None:
            n = self._index.ntotal
            table = faiss.rev_swig_ptr(self._index.get_xb(), n * self.dim).reshape(n, self.dim)
            return self._addrs.copy(), table.copy()
        invlists = self._index.invlists
        addrs, vectors = [np.empty(0, np.int64)], [np.empty((0, self.dim), np.float32)]
        for lst in range(invlists.nlist):
            n = invlists.list_size(lst)
            if n:
                addrs.append(faiss.rev_swig_ptr(invlists.get_ids(lst), n).copy())
                codes = faiss.rev_swig_ptr(invlists.get_codes(lst), n * invlists.code_size)
                vectors.append(codes.view(np.float32).reshape(n, self.dim).copy())
        return np.concatenate(addrs), np.concatenate(vectors)

    def vectors_of(self, addrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which of `addrs` this shard holds, their vectors), without copying the rest."""
        if self._router is not None:
            held = np.isin(addrs, self._addrs)
            vectors = np.empty((int(held.sum()), self.dim), np.float32)
            for row, addr in enumerate(addrs[held].tolist()):
                vectors[row] = self._index.reconstruct(addr)
            return held, vectors
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
        if not len(addrs):
            return
        addrs = np.asarray(addrs, dtype=np.int64)
        if self._router is None:
            self._index.add(vectors)
        else:
            self._index.add_with_ids(vectors, addrs)
        self._addrs = np.concatenate([self._addrs, addrs])

    def remove(self, addrs: np.ndarray) -> None:
        if not len(addrs):
            return
        drop = np.isin(self._addrs, addrs)
        if not drop.any():
            return
        if self._router is None:
            self._index.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(drop).astype(np.int64)))
        else:  # the hash-table direct map removes by id array only
            self._index.remove_ids(faiss.IDSelectorArray(self._addrs[drop]))
        self._addrs = self._addrs[~drop]

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        route: Route | None = None,
    ) -> ShardHits:
        """Top-k: exact while flat; once indexed, over the partitions of `route` (the router's
        assignment of this batch), or over every partition (exact) without one."""
        if self._router is not None:
            return self._search_partitions(queries, k, allowed, route)
        params = None
        if allowed is not None:
            mask = np.isin(self._addrs, allowed)
            bitmap = np.packbits(mask, bitorder="little")  # must outlive the search below
            selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
            params = faiss.SearchParameters(sel=selector)
        scores, positions = flat_search(self._index, queries, k, params)
        addrs = (
            np.where(positions >= 0, self._addrs[positions], -1) if len(self._addrs) else positions
        )
        return ShardHits(scores, addrs, self.held_bytes, 0)

    def _search_partitions(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, route: Route | None
    ) -> ShardHits:
        index = self._index
        if route is None:
            coarse, lists = index.quantizer.search(queries, index.nlist)
        else:
            coarse, lists = route.coarse, route.lists
        # ids are addresses: the filter applies as it is (the selector outlives the search)
        selector = None if allowed is None else faiss.IDSelectorBatch(allowed)
        scores, addrs = search_preassigned(index, queries, k, lists, coarse, selector)
        return ShardHits(scores, addrs, 0, int(lists.shape[1]))

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
