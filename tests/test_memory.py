"""The Memory API end to end: add, get, search, upsert, delete, reopen, stats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import unit_vectors

from rag_memory import Hit, Memory, MemoryClosedError, UnknownIdError

DOCS = {
    "paris": "Paris is the capital and largest city of France.",
    "volcano": "Volcanoes form where magma from the mantle reaches the surface.",
    "hash": "A hash table finds a key by hashing it to a bucket index.",
}


def test_text_roundtrip_and_search(text_memory: Memory) -> None:
    ids = text_memory.add(
        list(DOCS.values()), ids=list(DOCS), metadata=[{"topic": t} for t in DOCS]
    )
    assert ids == list(DOCS)
    assert len(text_memory) == 3
    hits = text_memory.search("What is the capital of France?", k=2)
    assert [type(h) for h in hits] == [Hit, Hit]
    assert hits[0].id == "paris" and hits[0].text == DOCS["paris"]
    assert hits[0].metadata == {"topic": "paris"}
    assert hits[0].score > hits[1].score
    # a stored text is its own nearest neighbour with cosine ~1
    self_hit = text_memory.search(DOCS["volcano"], k=1)[0]
    assert self_hit.id == "volcano" and self_hit.score == pytest.approx(1.0, abs=1e-5)


def test_batched_text_search_matches_single(text_memory: Memory) -> None:
    text_memory.add(list(DOCS.values()), ids=list(DOCS))
    queries = ["magma and eruptions", "looking up keys"]
    batch = text_memory.search(queries, k=3)
    assert len(batch) == 2
    for q, hits in zip(queries, batch, strict=True):
        assert [h.id for h in hits] == [h.id for h in text_memory.search(q, k=3)]


def test_generated_ids_are_unique(vector_memory: Memory) -> None:
    ids = vector_memory.add(["a", "b"], vectors=unit_vectors(2, 16, seed=1))
    assert len(set(ids)) == 2 and all(isinstance(i, str) and i for i in ids)
    assert [s.text for s in vector_memory.get(ids)] == ["a", "b"]


def test_vector_search_is_exact(vector_memory: Memory) -> None:
    vectors = unit_vectors(200, 16)
    queries = unit_vectors(5, 16, seed=7)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    results = vector_memory.search(queries, k=10)
    assert [[h.id for h in hits] for hits in results] == [
        [f"s{i}" for i in row] for row in expected
    ]
    one = vector_memory.search(queries[0], k=3)  # a 1-D vector is one query
    assert [h.id for h in one] == [f"s{i}" for i in expected[0, :3]]


def test_unnormalised_vectors_are_normalised(vector_memory: Memory) -> None:
    v = unit_vectors(1, 16, seed=3)
    vector_memory.add(["scaled"], ids=["scaled"], vectors=5.0 * v)
    hit = vector_memory.search(v[0], k=1)[0]
    assert hit.id == "scaled" and hit.score == pytest.approx(1.0, abs=1e-5)


def test_k_larger_than_memory(vector_memory: Memory) -> None:
    assert len(vector_memory.search(unit_vectors(1, 16)[0], k=1000)) == 200


def test_upsert_gives_new_address_and_replaces(vector_memory: Memory) -> None:
    old = vector_memory.get(["s3"])[0]
    v = unit_vectors(1, 16, seed=99)
    vector_memory.upsert(["slot 3, revised"], ids=["s3"], metadata=[{"rev": 2}], vectors=v)
    new = vector_memory.get(["s3"])[0]
    assert new.text == "slot 3, revised" and new.metadata == {"rev": 2}
    assert new.address > old.address  # addresses are never reused
    assert len(vector_memory) == 200
    hits = vector_memory.search(v[0], k=200)
    assert [h.id for h in hits].count("s3") == 1 and hits[0].id == "s3"
    # upsert of a new id simply adds it
    vector_memory.upsert(["fresh"], ids=["fresh"], vectors=unit_vectors(1, 16, seed=5))
    assert len(vector_memory) == 201


def test_delete_removes_from_search_and_get(vector_memory: Memory) -> None:
    target = unit_vectors(200, 16)[10]
    assert vector_memory.search(target, k=1)[0].id == "s10"
    addresses = {h.id: h.address for h in vector_memory.search(target, k=200)}
    vector_memory.delete(["s10", "s11"])
    assert len(vector_memory) == 198
    hits = vector_memory.search(target, k=200)
    assert "s10" not in {h.id for h in hits} and len(hits) == 198
    # the other slots keep their addresses (no drift after removal)
    assert all(addresses[h.id] == h.address for h in hits)
    with pytest.raises(UnknownIdError):
        vector_memory.get(["s10"])
    # a deleted id can be added again
    vector_memory.add(["back"], ids=["s10"], vectors=target)
    assert vector_memory.search(target, k=1)[0].text == "back"


def test_reopen_restores_everything(tmp_path: Path) -> None:
    path = tmp_path / "m"
    vectors = unit_vectors(50, 8)
    with Memory.create(path, dim=8) as mem:
        mem.add([f"t{i}" for i in range(50)], ids=[f"i{i}" for i in range(50)], vectors=vectors)
        mem.delete(["i0"])
        mem.upsert(["t1 again"], ids=["i1"], vectors=vectors[1])
        before = [[(h.id, h.address) for h in hits] for hits in mem.search(vectors, k=5)]
    with Memory.open(path) as mem:
        assert len(mem) == 49
        after = [[(h.id, h.address) for h in hits] for hits in mem.search(vectors, k=5)]
        assert after == before
        assert mem.get(["i1"])[0].text == "t1 again"


def test_stats(vector_memory: Memory) -> None:
    stats = vector_memory.stats()
    assert stats["slots"] == 200 and stats["dim"] == 16
    assert stats["tiers"]["ram"]["shards"] == 1 and stats["tiers"]["ram"]["bytes"] >= 200 * 16 * 4
    assert stats["tiers"]["gpu"] == {"shards": 0, "bytes": 0}
    version = stats["version"]
    vector_memory.delete(["s1"])
    assert vector_memory.stats()["version"] == version + 1
    assert vector_memory.stats()["slots"] == 199


def test_closed_memory_refuses_calls(tmp_path: Path) -> None:
    mem = Memory.create(tmp_path / "m", dim=4)
    mem.close()
    mem.close()  # idempotent
    with pytest.raises(MemoryClosedError):
        mem.search(np.ones(4, dtype=np.float32))
    with pytest.raises(MemoryClosedError):
        mem.add(["x"], vectors=np.ones((1, 4), dtype=np.float32))


def test_row_cache_keeps_recent_rows_by_bytes_and_forgets_deleted_slots(tmp_path: Path) -> None:
    from rag_memory.store.row_cache import RowCache
    from rag_memory.store.slot_table import SlotTable

    rows = {i: (f"id{i}", "x" * 10, "{}", i) for i in range(1, 20)}
    loads: list[list[int]] = []

    def load(addrs: list[int]) -> list[tuple]:
        loads.append(addrs)
        return [rows[a] for a in addrs if a in rows]

    cache = RowCache(max_bytes=4 * 220)  # a generation holds two rows
    assert dict(cache.lookup([1, 2, 99], load)) == {1: rows[1], 2: rows[2]}  # 99: no such row
    assert loads == [[1, 2, 99]]
    assert dict(cache.lookup([1, 2], load)) == {1: rows[1], 2: rows[2]} and len(loads) == 1
    cache.lookup([3], load)  # the young generation (1, 2) turns old; 3 starts a new one
    cache.lookup([1], load)  # found in the old generation: promoted, not loaded
    assert len(loads) == 2
    cache.lookup([4, 5], load)  # fills the young one again: the old one, holding 2, goes
    cache.lookup([1, 2], load)
    assert loads[-1] == [2]  # 2 was not used recently: loaded again; 1 was kept
    assert dict(RowCache(0).lookup([1], load)) == {1: rows[1]}  # disabled: always loads
    table = SlotTable.create(tmp_path / "slots.sqlite", 4)
    (address,), _ = table.write(
        ["s9"], ["nine"], ["{}"], unit_vectors(1, 4), False, [1.0], [None], now=2.0
    )
    assert table.fetch([address])[address][0] == "s9"
    assert table.fetch([address])[address][0] == "s9"  # now cached
    table.tombstone(["s9"], now=2.0)
    assert address not in table.fetch([address])  # a deleted slot is never served from cache
    table.close()


def test_contains_answers_per_id_without_raising(tmp_path) -> None:
    with Memory.create(tmp_path / "m", dim=4) as mem:
        mem.add(["a", "b"], ids=["x", "y"], vectors=np.eye(4, dtype=np.float32)[:2])
        mem.delete(["y"])
        assert mem.contains(["x", "y", "z", "x"]) == [True, False, False, True]
        assert mem.contains("x") == [True]


def test_a_batch_whose_hits_repeat_and_exceed_one_statement_reads_every_row(
    tmp_path: Path,
) -> None:
    """Hit rows are read by prepared statements of bounded width: a batch whose hits repeat
    across queries and number more than one statement holds still gets every row, once."""
    vectors = unit_vectors(5000, 8, seed=3)
    with Memory.create(tmp_path / "m", dim=8, cache=None) as mem:
        mem.add([f"t{i}" for i in range(5000)], ids=[f"i{i}" for i in range(5000)], vectors=vectors)
        results = mem.search(vectors[:80], k=100)  # 8,000 hits, many slots hit several times
    assert all(len(hits) == 100 for hits in results)
    assert [hits[0].id for hits in results] == [f"i{i}" for i in range(80)]
    assert all(h.text == "t" + h.id[1:] for hits in results for h in hits)
