"""Metadata filters: every operator, and k hits whenever k slots match (filtering inside FAISS)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import unit_vectors

from rag_memory import InvalidFilterError, Memory
from rag_memory.store import filters
from rag_memory.store.filters import MAX_FILTER_DEPTH, MAX_FILTER_PARAMS

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


# -- keys of every shape, long lists, deep filters ---------------------------------------
def evaluate(where: dict, meta: dict) -> bool:
    """The grammar of `store/filters.py` in plain Python: the oracle the SQL is checked with."""

    def kind(value):
        return "bool" if isinstance(value, bool) else "str" if isinstance(value, str) else "num"

    def equal(field: str, value) -> bool:
        return field in meta and kind(meta[field]) == kind(value) and meta[field] == value

    def field_ok(field: str, cond) -> bool:
        if not isinstance(cond, dict):
            return equal(field, cond)
        ((op, arg),) = cond.items()
        if op == "$eq":
            return equal(field, arg)
        if op == "$ne":
            return not equal(field, arg)
        if op == "$in":
            return any(equal(field, a) for a in arg)
        if op == "$nin":
            return not any(equal(field, a) for a in arg)
        have = meta.get(field)
        if field not in meta or kind(have) != kind(arg) or kind(arg) == "bool":
            return False
        return {"$gt": have > arg, "$gte": have >= arg, "$lt": have < arg, "$lte": have <= arg}[op]

    return all(
        any(evaluate(sub, meta) for sub in value)
        if key == "$or"
        else all(evaluate(sub, meta) for sub in value)
        if key == "$and"
        else field_ok(key, value)
        for key, value in where.items()
    )


ODD_KEYS = [
    "catégorie",
    "日本語",
    'say "hi"',
    "back\\slash",
    'é\\"mixed',
    "a.b",
    "a[0]",
    "two words",
    "",
    "new\nline",
    "tab\there",
    "it's",
    "plain_key",
]
SHAPES = ["x", "y", 1, 2.5, True, None]  # None: the slot has no such key


@pytest.fixture(scope="module")
def odd_memory(tmp_path_factory):
    """30 slots; slot i has ODD_KEYS[j] = SHAPES[(i + j) % 6] (absent for None)."""
    metas = [
        {
            key: SHAPES[(i + j) % 6]
            for j, key in enumerate(ODD_KEYS)
            if SHAPES[(i + j) % 6] is not None
        }
        for i in range(30)
    ]
    with Memory.create(tmp_path_factory.mktemp("odd") / "m", dim=16, cache=None) as mem:
        mem.add(
            [f"t{i}" for i in range(30)],
            ids=[f"o{i}" for i in range(30)],
            metadata=metas,
            vectors=unit_vectors(30, 16, seed=5),
        )
        yield mem, metas


@pytest.mark.parametrize("key", ODD_KEYS)
@pytest.mark.parametrize(
    "condition",
    [
        "x",
        1,
        True,
        {"$ne": "x"},
        {"$ne": True},
        {"$in": ["x", 2.5, True]},
        {"$nin": ["y", 1]},
        {"$gt": 1},
        {"$lte": "x"},
        {"$lt": 3},
    ],
    ids=repr,
)
def test_keys_of_every_shape(odd_memory, key: str, condition) -> None:
    """Non-ASCII, quotes, backslashes, dots, brackets, spaces, control characters and the
    empty key all filter as literal keys (issue #12, defect 6: they matched nothing)."""
    mem, metas = odd_memory
    where = {key: condition}
    expected = {f"o{i}" for i, meta in enumerate(metas) if evaluate(where, meta)}
    assert expected  # every shape and operator selects some slots, never all
    assert expected != {f"o{i}" for i in range(30)}
    assert {h.id for h in mem.search(QUERY, k=100, where=where)} == expected


def _ids(mem: Memory, where: dict) -> set[str]:
    return {h.id for h in mem.search(QUERY, k=1000, where=where)}


def _expected(where: dict) -> set[str]:
    metas = [{"n": i, "even": i % 2 == 0, "group": f"g{i % 5}"} for i in range(200)]
    return {f"s{i}" for i, meta in enumerate(metas) if evaluate(where, meta)}


@pytest.mark.parametrize(
    "where",
    [
        {"n": {"$in": list(range(0, 40_000, 2))}},
        {"n": {"$nin": list(range(1, 40_000, 2))}},
        {"group": {"$in": [f"g{i}" for i in range(1, 20_001)]}},
        {"n": {"$in": [True, "g1", *range(100, 20_100)]}},
        {"$or": [{"n": i} for i in range(0, 4000, 2)]},
        {"$and": [{"n": {"$ne": i}} for i in range(1, 4001, 2)]},
        {"$or": [{"$and": [{"n": {"$gte": i}}, {"n": {"$lt": i + 1}}]} for i in range(0, 3000, 3)]},
    ],
    ids=[
        "in 20k ints",
        "nin 20k ints",
        "in 20k strings",
        "in mixed",
        "or 2k",
        "and 2k",
        "or of ands 1k",
    ],
)
def test_long_lists_work(vector_memory: Memory, where: dict) -> None:
    """A 20,000-value $in and a 2,000-clause $or were reported as a corrupt file (#12, 11)."""
    expected = _expected(where)
    assert expected
    assert _ids(vector_memory, where) == expected


def heaviest(depth: int, width: int = 1) -> dict:
    """A filter `depth` objects deep, each level as heavy for SQLite's parser as the grammar
    allows: several keys, the nested filter last, leaves on keys that need json_each, and at
    the bottom a $nin of three kinds of value, or a $or `width` long (even n; over 32 ** 2,
    so SQL joins it in three levels)."""
    where: dict = (
        {"$or": [{"n": i} for i in range(0, 2 * width, 2)]}
        if width > 1
        else {'say "hi"': {"$nin": [1, "a", True]}, "n": {"$lt": 150}}
    )
    for level in range(depth - 1 - (width > 1)):  # a $or of width > 1 is one level itself
        if level % 2:
            where = {'say "hi"': {"$ne": level}, "$or": [{"n": {"$in": [level, 3]}}, where]}
        else:
            where = {"n": {"$gte": level % 3}, "$and": [{"group": {"$ne": "g9"}}, where]}
    return where


def bushiest(depth: int) -> dict:
    """A full binary tree of $and / $or `depth` objects deep (2 ** (depth - 1) leaves)."""
    if depth == 1:
        return {"even": True}
    sub = bushiest(depth - 1)
    return (
        {"$and": [sub, {"$or": [sub, {"n": {"$lt": 100}}]}]} if depth % 2 else {"$or": [sub, sub]}
    )


@pytest.mark.parametrize(
    "where",
    [heaviest(MAX_FILTER_DEPTH), heaviest(MAX_FILTER_DEPTH, width=1_100), bushiest(12)],
    ids=["heaviest", "heaviest and widest", "bushiest"],
)
def test_deepest_filters_run(vector_memory: Memory, where: dict) -> None:
    expected = _expected(where)
    assert expected and len(expected) < 200
    assert _ids(vector_memory, where) == expected


@pytest.mark.parametrize("depth", [MAX_FILTER_DEPTH + 1, 50_000])
def test_deeper_filters_are_refused(vector_memory: Memory, depth: int) -> None:
    """Deep filters raised a bare RecursionError (issue #12, defect 11)."""
    with pytest.raises(InvalidFilterError, match=f"deeper than {MAX_FILTER_DEPTH}"):
        vector_memory.search(QUERY, k=3, where=heaviest(depth))


def test_too_many_values_is_a_filter_error(vector_memory: Memory) -> None:
    where = {"$or": [{"n": i} for i in range(MAX_FILTER_PARAMS)]}
    with pytest.raises(InvalidFilterError, match=f"{MAX_FILTER_PARAMS:,}") as info:
        vector_memory.search(QUERY, k=3, where=where)
    assert "$in" in str(info.value)  # says what to use instead


def test_a_filter_past_sqlite_limits_is_a_filter_error(
    vector_memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the depth bound lifted, SQLite's parser stack overflows: that is reported as an
    InvalidFilterError naming the limit, never as a corrupt slot table."""
    monkeypatch.setattr(filters, "MAX_FILTER_DEPTH", 10_000)
    with pytest.raises(InvalidFilterError, match="parser stack overflow"):
        vector_memory.search(QUERY, k=3, where=heaviest(60))
    assert len(vector_memory.search(QUERY, k=3, where={"n": {"$lt": 3}})) == 3
