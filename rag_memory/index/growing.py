"""The growing shard: an exact in-RAM index (IndexIDMap2 over IndexFlatIP) for new slots.

Its durable copy is the slot table (vectors are committed there first), so it is rebuilt on
open and never written to disk itself, as Milvus does with growing segments. FAISS ids are
slot addresses, so removing a vector never shifts another slot's address.
"""

from __future__ import annotations

import faiss
import numpy as np

from ..store.slot_table import GROWING_SHARD


class GrowingShard:
    """Exact inner-product search over the slots not yet sealed."""

    shard_id = GROWING_SHARD

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return self._index.ntotal

    @property
    def nbytes(self) -> int:
        # float32 vectors plus the int64 id map (IndexIDMap2 also keeps a reverse hash map).
        return self._index.ntotal * (4 * self.dim + 8 + 16)

    def add(self, addrs: np.ndarray, vectors: np.ndarray) -> None:
        if len(addrs):
            self._index.add_with_ids(vectors, addrs)

    def remove(self, addrs: np.ndarray) -> None:
        if len(addrs):
            self._index.remove_ids(np.ascontiguousarray(addrs, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int,
               selector: faiss.IDSelector | None = None) -> tuple[np.ndarray, np.ndarray]:
        params = None if selector is None else faiss.SearchParameters(sel=selector)
        return self._index.search(queries, k, params=params)
