"""The lookups a framework adapter builds on: ids by metadata, deletes that skip missing ids,
the stored vectors of hits, and the memory's own embedder."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import HashEmbedder, unit_vectors

from rag_memory import InvalidFilterError, InvalidInputError, Memory, UnknownIdError


def test_ids_by_where_in_write_order(vector_memory: Memory) -> None:
    assert vector_memory.ids() == [f"s{i}" for i in range(200)]
    assert vector_memory.ids({"group": "g3", "n": {"$lt": 20}}) == ["s3", "s8", "s13", "s18"]
    assert vector_memory.ids({"n": {"$gt": 1000}}) == []
    with pytest.raises(InvalidFilterError):
        vector_memory.ids({"n": {"$like": "x"}})


def test_ids_leave_out_deleted_and_expired(tmp_path) -> None:
    with Memory.create(tmp_path / "m", dim=8) as mem:
        mem.add(["a", "b", "c"], ids=["a", "b", "c"], vectors=unit_vectors(3, 8))
        mem.add(["gone"], ids=["gone"], vectors=unit_vectors(1, 8, seed=1), ttl=1e-9)
        mem.delete("b")
        assert mem.ids() == ["a", "c"]


def test_delete_missing_ok_deletes_what_is_stored(vector_memory: Memory) -> None:
    with pytest.raises(UnknownIdError):
        vector_memory.delete(["s1", "nope"])
    assert vector_memory.contains(["s1"]) == [True]  # all or nothing without missing_ok
    vector_memory.delete(["s1", "nope", "s2"], missing_ok=True)
    assert vector_memory.contains(["s1", "s2", "s3"]) == [False, False, True]
    vector_memory.delete(["s1", "nope"], missing_ok=True)  # nothing stored: no error
    assert len(vector_memory) == 198
    with pytest.raises(InvalidInputError):
        vector_memory.delete(["s3"], missing_ok="yes")  # type: ignore[arg-type]


def test_vectors_of_returns_the_stored_keys(tmp_path) -> None:
    vectors = unit_vectors(5, 8)
    with Memory.create(tmp_path / "m", dim=8) as mem:
        mem.add([f"t{i}" for i in range(5)], ids=[f"t{i}" for i in range(5)], vectors=vectors)
        hits = mem.search(vectors[2], k=3)
        mem.delete(hits[1].id)
        kept, found = mem.vectors_of(hits)
        assert [h.id for h in kept] == [hits[0].id, hits[2].id]
        order = [int(h.id[1:]) for h in kept]
        np.testing.assert_allclose(found, vectors[order], atol=1e-6)
        assert mem.vectors_of([])[1].shape == (0, 8)
        with pytest.raises(InvalidInputError):
            mem.vectors_of(["t1"])  # type: ignore[list-item]


def test_embedder_is_the_one_the_memory_encodes_with(tmp_path) -> None:
    model = HashEmbedder(dim=8)
    with Memory.create(tmp_path / "m", embedder=model) as mem:
        assert mem.embedder is model
        mem.add(["some text"], ids=["x"])
        np.testing.assert_allclose(
            mem.vectors_of(mem.search("some text", k=1))[1][0],
            model.encode(["some text"])[0],
            atol=1e-6,
        )
