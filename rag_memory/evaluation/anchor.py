"""The exact-search anchor: a plain `faiss.IndexFlatIP` over the very vectors the memory holds.

Every quality and speed figure of the memory is reported next to this anchor's, so a loss
of recall or a slowdown is visible as a difference or ratio, not guessed. The memory's vectors
are read back from its slot table (read-only) instead of re-embedding the corpus: re-embedding
costs minutes and may differ in the last bits, which would break the exact-match check.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import faiss
import numpy as np

from ..distributed.opening import open_members
from ..errors import RagMemoryError
from ..memory import Memory
from .metrics import Run, doc_id_of, doc_scores

if TYPE_CHECKING:
    from ..distributed.opening import AnyMemory

logger = logging.getLogger(__name__)


class ExactAnchor:
    """Exact inner-product top-k over `vectors`, whose row i has key `keys[i]`."""

    name = "exact_faiss"

    def __init__(self, vectors: np.ndarray, keys: Sequence[str] | None = None) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)
        self.keys = list(keys) if keys is not None else None
        if self.keys is not None and len(self.keys) != len(vectors):
            raise RagMemoryError(f"{len(self.keys)} keys for {len(vectors)} vectors")

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def nbytes(self) -> int:
        return self.index.ntotal * self.index.d * 4

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row numbers), each (nq, k); -1 rows where fewer than k vectors exist."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def run(self, query_ids: Sequence[str], queries: np.ndarray, k: int) -> Run:
        """A document-level run (max over chunks), keyed like `metrics.hits_to_run`."""
        if self.keys is None:
            raise RagMemoryError("this anchor was built without keys")
        scores, rows = self.search(queries, k)
        return {
            qid: doc_scores([(self.keys[r], s) for s, r in zip(srow, rrow, strict=True) if r >= 0])
            for qid, srow, rrow in zip(query_ids, scores.tolist(), rows.tolist(), strict=True)
        }


def anchor_from_memory(mem: AnyMemory) -> ExactAnchor:
    """An ExactAnchor over the memory's stored vectors (every shard's, full precision), keyed by
    document id (metadata "doc_id" when present, else the slot id). A sharded memory's are
    read from its members' own files (each an ordinary memory, opened read-only)."""
    if isinstance(mem, Memory):
        return _anchor([mem], mem.path, mem.manifest.dim)
    with open_members(mem.path) as members:
        return _anchor(members, mem.path, mem.manifest.dim)


def _anchor(memories: Sequence[Memory], path: object, dim: int) -> ExactAnchor:
    parts, keys = [], []
    for member in memories:
        for slots, vectors in member.iter_vectors(batch=10_000):  # one SQLite query per chunk
            parts.append(vectors)
            keys += [doc_id_of(slot.id, slot.metadata) for slot in slots]
    vectors = np.concatenate(parts) if parts else np.empty((0, dim), np.float32)
    logger.info("exact anchor over %d stored vectors of %s", len(vectors), path)
    return ExactAnchor(vectors, keys)
