"""Merging per-shard top-k gives the exact top-k of the union."""

from __future__ import annotations

import numpy as np
from helpers import unit_vectors

from rag_memory.index.growing import GrowingShard
from rag_memory.index.merge import merge_topk


def test_two_shards_equal_one() -> None:
    vectors = unit_vectors(1000, 24)
    addrs = np.arange(1000, dtype=np.int64) * 3 + 7
    whole, part_a, part_b = GrowingShard(24), GrowingShard(24), GrowingShard(24)
    whole.add(addrs, vectors)
    part_a.add(addrs[::2], vectors[::2])
    part_b.add(addrs[1::2], vectors[1::2])
    queries = unit_vectors(20, 24, seed=5)
    s1, a1 = whole.search(queries, 15)[:2]
    s2, a2 = merge_topk([part_a.search(queries, 15)[:2], part_b.search(queries, 15)[:2]], 15)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(s1, s2, rtol=1e-6)


def test_missing_entries_sort_last_and_pad() -> None:
    scores = np.array([[0.9, -np.inf]], dtype=np.float32)
    addrs = np.array([[5, -1]])
    other = (np.array([[0.5]], dtype=np.float32), np.array([[8]]))
    s, a = merge_topk([(scores, addrs), other], 4)
    assert a.tolist() == [[5, 8, -1, -1]] and s[0, 0] == np.float32(0.9)
