"""The exact-search anchor: a plain `faiss.IndexFlatIP` over the very vectors the memory holds.

Every quality and speed figure of the memory is reported next to this anchor's, so a loss
of recall or a slowdown is visible as a difference or ratio, not guessed. The memory's vectors
are read back from its slot table (read-only) instead of re-embedding the corpus: re-embedding
costs minutes and may differ in the last bits, which would break the exact-match check.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import faiss
import numpy as np

from ..errors import RagMemoryError
from ..memory import Memory
from ..store.slot_table import TABLE_NAME, SlotTable
from .metrics import Run, doc_id_of, doc_scores

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
        return {qid: doc_scores([(self.keys[r], s) for s, r in zip(srow, rrow) if r >= 0])
                for qid, srow, rrow in zip(query_ids, scores.tolist(), rows.tolist())}


def anchor_from_memory(mem: Memory) -> ExactAnchor:
    """An ExactAnchor over the memory's stored vectors, keyed by document id (metadata
    "doc_id" when present, else the slot id), read through a read-only SlotTable.

    Only the growing shard keeps its vectors in the slot table; once sealed shards exist this
    must read them from the shard files, so a count mismatch is refused rather than ignored.
    """
    table = SlotTable(mem.path / TABLE_NAME, mem.manifest.dim, read_only=True)
    try:
        addrs, vectors, _ = table.growing_vectors()
        if len(addrs) != len(mem):
            raise RagMemoryError(f"{mem.path}: the slot table holds {len(addrs)} growing-shard "
                                 f"vectors but the memory {len(mem)} slots; the anchor cannot "
                                 f"read sealed shards yet")
        keys: list[str] = []
        batch = 10_000  # one SQLite query per batch keeps the JSON parameter small
        for start in range(0, len(addrs), batch):
            chunk = addrs[start:start + batch].tolist()
            rows = table.fetch(chunk)
            for addr in chunk:
                slot_id, _text, meta = rows[addr]
                keys.append(doc_id_of(slot_id, json.loads(meta)))
    finally:
        table.close()
    logger.info("exact anchor over %d stored vectors of %s", len(addrs), mem.path)
    return ExactAnchor(vectors, keys)

