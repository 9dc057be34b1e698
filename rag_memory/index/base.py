"""The shard interface: what every FAISS shard (growing or sealed, in any tier) offers search."""

from __future__ import annotations

from typing import Protocol

import faiss
import numpy as np


class Shard(Protocol):
    """A searchable piece of the memory's vectors, keyed by slot address (the FAISS id)."""

    shard_id: int

    def __len__(self) -> int:
        """Vectors held, tombstones included."""

    @property
    def nbytes(self) -> int:
        """Bytes the shard occupies in its tier."""

    def search(self, queries: np.ndarray, k: int,
               selector: faiss.IDSelector | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, addresses) per query, shape (nq, k); missing entries are (-inf, -1).
        `selector` restricts the search to some addresses (metadata filters)."""

    def remove(self, addrs: np.ndarray) -> None:
        """Drop `addrs` from the shard (or tombstone them); unknown addresses are ignored."""
