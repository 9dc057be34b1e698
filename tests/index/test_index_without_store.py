"""TieredIndex over the `ShardTable` protocol alone: no SQLite, no Memory. The index must need
nothing of the slot table beyond the protocol's calls, so it can be built and tested bare."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from helpers import unit_vectors

from rag_memory.index.base import TableSnapshot
from rag_memory.index.budgets import resolve_budgets
from rag_memory.index.config import IndexConfig
from rag_memory.index.shard_files import SHARDS_DIR
from rag_memory.index.tiered import TieredIndex
from rag_memory.manifest import Manifest, write_manifest

DIM = 16


class DictTable:
    """The ShardTable protocol over plain dicts: address -> (vector, shard, deleted)."""

    def __init__(self) -> None:
        self.vectors: dict[int, np.ndarray] = {}
        self.shard: dict[int, int] = {}
        self.deleted: dict[int, int] = {}
        self.added_version: dict[int, int] = {}
        self.path = Path("dict-table")
        self._version = 0
        self._generation = 0

    def add(self, vectors: np.ndarray) -> np.ndarray:
        start = len(self.shard) + 1
        addrs = np.arange(start, start + len(vectors), dtype=np.int64)
        self._version += 1
        for addr, vector in zip(addrs.tolist(), vectors, strict=True):
            self.vectors[addr], self.shard[addr] = vector, 0
            self.added_version[addr] = self._version
        return addrs

    def delete(self, addrs: np.ndarray) -> None:
        self._version += 1
        for addr in addrs.tolist():
            self.deleted[addr] = self._version
            self.vectors.pop(addr, None)

    def version(self) -> int:
        return self._version

    def live_count(self) -> int:
        return len(self.shard) - len(self.deleted)

    def counters(self) -> tuple[int, int]:
        return self._version, self._generation

    def commit_mark(self) -> tuple[int, int]:
        return self._version, self._generation

    def snapshot(self, since_version: int = -1) -> TableSnapshot:
        addrs = sorted(
            a
            for a, s in self.shard.items()
            if s == 0 and a in self.vectors and self.added_version[a] > since_version
        )
        vectors = np.array([self.vectors[a] for a in addrs], np.float32).reshape(-1, DIM)
        deleted = [a for a, v in self.deleted.items() if v > since_version]
        return TableSnapshot(
            self._version,
            self._generation,
            self.live_count(),
            np.array(addrs, np.int64),
            vectors,
            np.array(deleted, np.int64),
        )

    def apply_sealing(
        self, generation: int, shards: dict[int, np.ndarray], live_shards: Sequence[int]
    ) -> None:
        for shard_id, addrs in shards.items():
            for addr in addrs.tolist():
                self.shard[addr] = shard_id
                self.vectors.pop(addr, None)
        self._generation = generation


def test_an_index_seals_and_searches_over_the_protocol_alone(tmp_path: Path) -> None:
    (tmp_path / SHARDS_DIR).mkdir()
    config = IndexConfig(seal_threshold=10_000, nlist=8, nprobe=8, shard_groups=2)
    manifest = Manifest(embedder="none", dim=DIM, index=config.to_dict())
    write_manifest(tmp_path, manifest)
    table = DictTable()
    index = TieredIndex(tmp_path, manifest, table, resolve_budgets({}, None, None), False)
    vectors = unit_vectors(2000, DIM)
    with index.lock.write():
        addrs = table.add(vectors)
        index.apply_write(addrs, vectors, removed=np.empty(0, np.int64))
    queries = vectors[:5]
    before = index.search(queries, 3)[1]
    assert before[:, 0].tolist() == addrs[:5].tolist()  # each vector finds itself
    assert index.seal(force=True) == 2000
    assert len(index.growing) == 0 and len(index.sealed_shards) == 2
    assert table.counters()[1] == index.manifest.generation == 1
    assert index.search(queries, 3)[1][:, 0].tolist() == addrs[:5].tolist()  # all probed
    with index.lock.write():
        table.delete(addrs[:1])
        index.apply_write(np.empty(0, np.int64), np.empty((0, DIM), np.float32), addrs[:1])
    assert addrs[0] not in index.search(queries[:1], 3)[1]  # a tombstone never answers
    assert index.live_count() == table.live_count() == 1999
    index.close()
    reopened = TieredIndex(tmp_path, index.manifest, table, resolve_budgets({}, None, None), False)
    assert reopened.live_count() == 1999
    assert reopened.search(queries, 3)[1][1:, 0].tolist() == addrs[1:5].tolist()
    reopened.close()
