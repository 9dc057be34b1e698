"""Metadata filters: every operator, and k hits whenever k slots match (filtering inside FAISS)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import unit_vectors

from rag_memory import InvalidFilterError, Memory

QUERY = unit_vectors(1, 16, seed=42)[0]


def _ns(mem: Memory, where: dict, k: int = 200) -> set[int]:
    return {h.metadata["n"] for h in mem.search(QUERY, k=k, where=where)}


@pytest.mark.parametrize(
    "where, expected",
    [
        ({"n": 7}, {7}),
        ({"n": {"$eq": 7}}, {7}),
        ({"n": {"$ne": 7}}, set(range(200)) - {7}),
        ({"n": {"$gt": 195}}, {196, 197, 198, 199}),
        ({"n": {"$gte": 198}}, {198, 199}),
        ({"n": {"$lt": 2}}, {0, 1}),
        ({"n": {"$lte": 1}}, {0, 1}),
        ({"n": {"$in": [3, 5, 500]}}, {3, 5}),
        ({"n": {"$nin": list(range(1, 200))}}, {0}),
        ({"group": "g1", "n": {"$lt": 20}}, {1, 6, 11, 16}),
        ({"$and": [{"group": "g1"}, {"n": {"$lt": 20}}]}, {1, 6, 11, 16}),
        ({"$or": [{"n": 3}, {"n": {"$gt": 198}}]}, {3, 199}),
        ({"even": True, "n": {"$lt": 6}}, {0, 2, 4}),
        ({"even": False, "n": {"$lt": 6}}, {1, 3, 5}),
        ({"even": {"$ne": True}, "n": {"$lt": 4}}, {1, 3}),
        ({"missing": "x"}, set()),
    ],
)
def test_operators(vector_memory: Memory, where: dict, expected: set[int]) -> None:
    assert _ns(vector_memory, where) == expected


def test_bool_and_int_are_distinct(vector_memory: Memory) -> None:
    vector_memory.add(
        ["one"],
        ids=["one"],
        metadata=[{"n": 1000, "even": 1}],
        vectors=unit_vectors(1, 16, seed=11),
    )
    assert 1000 not in _ns(vector_memory, {"even": True})
    assert _ns(vector_memory, {"even": 1}) == {1000}


def test_filter_returns_k_when_k_match(tmp_path) -> None:
    """The 10 matching slots are far from the query: post-filtering top-k would find none."""
    rng = np.random.default_rng(0)
    near = unit_vectors(1, 32, seed=1)[0]
    close = near + 0.05 * rng.standard_normal((990, 32)).astype(np.float32)
    far = -near + 0.05 * rng.standard_normal((10, 32)).astype(np.float32)
    with Memory.create(tmp_path / "m", dim=32) as mem:
        mem.add([f"c{i}" for i in range(990)], metadata=[{"kind": "common"}] * 990, vectors=close)
        mem.add([f"r{i}" for i in range(10)], metadata=[{"kind": "rare"}] * 10, vectors=far)
        hits = mem.search(near, k=10, where={"kind": "rare"})
        assert len(hits) == 10 and {h.metadata["kind"] for h in hits} == {"rare"}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        # fewer matches than k: all of them, no padding
        assert len(mem.search(near, k=50, where={"kind": "rare"})) == 10


def test_filter_sees_deletes_and_upserts(vector_memory: Memory) -> None:
    vector_memory.delete(["s7"])
    assert _ns(vector_memory, {"n": 7}) == set()
    vector_memory.upsert(["moved"], ids=["s8"], metadata=[{"n": 7}], vectors=unit_vectors(1, 16)[0])
    assert [h.id for h in vector_memory.search(QUERY, k=5, where={"n": 7})] == ["s8"]
    assert _ns(vector_memory, {"n": 8}) == set()


def test_keys_with_dots_are_literal(tmp_path) -> None:
    with Memory.create(tmp_path / "m", dim=4) as mem:
        mem.add(["a", "b"], metadata=[{"a.b": 1}, {"a": {"b": 1}}], vectors=np.eye(2, 4))
        assert [h.text for h in mem.search(np.ones(4), k=5, where={"a.b": 1})] == ["a"]


@pytest.mark.parametrize(
    "where",
    [
        {},
        [],
        "src",
        {"n": {"$gt": 1, "$lt": 5}},
        {"n": {"$regex": "x"}},
        {"$not": {"n": 1}},
        {"n": {"$in": []}},
        {"n": {"$in": 3}},
        {"$and": {"n": 1}},
        {"$or": []},
        {"n": [1, 2]},
        {"n": None},
        {"n": float("nan")},
        {"n": {"$gt": True}},
        {1: 2},
    ],
)
def test_malformed_filters_raise(vector_memory: Memory, where) -> None:
    with pytest.raises(InvalidFilterError):
        vector_memory.search(QUERY, k=3, where=where)
