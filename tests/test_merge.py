"""Merging per-shard top-k gives the exact top-k of the union."""

from __future__ import annotations

import numpy as np

from conftest import unit_vectors
from rag_memory.index.growing import GrowingShard
from rag_memory.index.merge import search_shards


def test_two_shards_equal_one() -> None:
    vectors = unit_vectors(1000, 24)
    addrs = np.arange(1000, dtype=np.int64) * 3 + 7
    whole, part_a, part_b = GrowingShard(24), GrowingShard(24), GrowingShard(24)
    whole.add(addrs, vectors)
    part_a.add(addrs[::2], vectors[::2])
    part_b.add(addrs[1::2], vectors[1::2])
    queries = unit_vectors(20, 24, seed=5)
    s1, a1 = search_shards([whole], queries, 15)
    s2, a2 = search_shards([part_a, part_b], queries, 15)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(s1, s2, rtol=1e-6)
    _, a3 = search_shards([part_a, part_b], queries, 5, addrs[100:200])
    assert set(a3.ravel()) <= set(addrs[100:200])
