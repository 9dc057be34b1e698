"""The shard interface: what every FAISS shard (growing or sealed, in any tier) offers search."""

from __future__ import annotations

from typing import Protocol

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
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, addresses) per query, shape (nq, k); missing entries are (-inf, -1).
        `allowed` (sorted addresses) restricts the search to those slots, inside FAISS
        through an IDSelector, so a metadata filter still yields k hits when k slots match."""

    def remove(self, addrs: np.ndarray) -> None:
        """Drop `addrs` from the shard (or tombstone them); unknown addresses are ignored."""
