"""The query cache (issue 6): coherent with writes, bounded, thread-safe, honest about hits."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _data import HARD_NEGATIVE_PAIRS
from helpers import HashEmbedder, unit_vectors

from rag_memory import CacheConfig, CachedHit, InvalidInputError, Memory
from rag_memory.cache import DEFAULT_THRESHOLD, group_key
from rag_memory.cache.result_cache import ResultCache
from rag_memory.embed import Embedder

DIM = 16
STATS_KEYS = {"hits", "semantic_hits", "misses", "evictions", "invalidations", "bytes", "hit_rate"}


def _same(cached: list, fresh: list) -> bool:
    """Ids and order exactly; scores to 1e-6 (numpy and FAISS may round an ulp apart)."""
    return [h.id for h in cached] == [h.id for h in fresh] and all(
        abs(a.score - b.score) <= 1e-6 for a, b in zip(cached, fresh, strict=True)
    )


def _memory(tmp_path: Path, n: int = 100, embedder: Embedder | None = None, **cache: Any) -> Memory:
    embedder = embedder or HashEmbedder()
    mem = Memory.create(tmp_path / "m", embedder=embedder, cache=CacheConfig(**cache))
    mem.add(
        [f"slot {i}" for i in range(n)],
        ids=[f"s{i}" for i in range(n)],
        metadata=[{"g": i % 4} for i in range(n)],
        vectors=unit_vectors(n, DIM, seed=1),
    )
    return mem


def test_coherence_10000_random_operations(tmp_path: Path) -> None:
    """Done-means (1): every cached search equals the uncached one, through 10,000 ops."""
    rng = np.random.default_rng(6)
    pool = unit_vectors(30, DIM, seed=2)
    texts = [f"question {i}" for i in range(5)]
    wheres = [None, None, None, {"g": 1}, {"g": {"$in": [0, 2]}}, {"n": {"$lt": 600}}]
    live: list[str] = []
    next_id = [0]

    def slots(n: int) -> tuple[list[str], np.ndarray, list[dict]]:
        vecs = unit_vectors(n, DIM, seed=int(rng.integers(1 << 31)))
        near = rng.random(n) < 0.5  # half land near a pooled query: they enter cached top-k
        noisy = pool[rng.integers(0, len(pool), n)] + 0.3 * vecs
        vecs[near] = noisy[near]
        meta = [{"g": int(rng.integers(0, 4)), "n": int(rng.integers(0, 1000))} for _ in range(n)]
        return [f"text {rng.integers(1 << 30)}" for _ in range(n)], vecs, meta

    with Memory.create(tmp_path / "m", embedder=HashEmbedder(), cache=CacheConfig()) as mem:
        ids = [f"id{i}" for i in range(120)]
        t, v, m = slots(120)
        mem.add(t, ids=ids, metadata=m, vectors=v)
        live += ids
        next_id[0] = 120
        mismatches = searches = 0
        for _ in range(10_000):
            op = rng.random()
            if op < 0.5:
                k, where = int(rng.choice([1, 5, 10])), wheres[rng.integers(len(wheres))]
                if rng.random() < 0.1:
                    query = texts[rng.integers(len(texts))]
                elif rng.random() < 0.1:
                    query = pool[rng.choice(len(pool), int(rng.integers(2, 5)), replace=False)]
                else:
                    query = pool[rng.integers(len(pool))]
                cached = mem.search(query, k, where)
                fresh = mem.search(query, k, where, cache=False)
                if np.ndim(query) == 2:
                    mismatches += sum(not _same(c, f) for c, f in zip(cached, fresh, strict=True))
                else:
                    mismatches += not _same(cached, fresh)
                searches += 1
            elif op < 0.7 or len(live) < 40:
                n = int(rng.integers(1, 4))
                new = [f"id{next_id[0] + i}" for i in range(n)]
                next_id[0] += n
                t, v, m = slots(n)
                mem.add(t, ids=new, metadata=m, vectors=v)
                live += new
            elif op < 0.85:
                chosen = list(
                    {live[i] for i in rng.integers(0, len(live), int(rng.integers(1, 3)))}
                )
                t, v, m = slots(len(chosen))
                mem.upsert(t, ids=chosen, metadata=m, vectors=v)
            else:
                chosen = list(
                    {live[i] for i in rng.integers(0, len(live), int(rng.integers(1, 3)))}
                )
                mem.delete(chosen)
                live = [i for i in live if i not in set(chosen)]
        stats = mem.stats()["cache"]
    assert mismatches == 0, f"{mismatches} of {searches} searches differ from a fresh search"
    # the run exercised what it claims to: repeated hits, in-place updates, drops
    assert stats["hits"] > 1000 and stats["updates"] > 100 and stats["invalidations"] > 50, stats
    assert stats["semantic_hits"] == 0  # the pool's queries are far apart


def test_text_layer_skips_the_embedder(tmp_path: Path) -> None:
    """The dense path's layers (lexical and hybrid results: tests/test_hybrid.py)."""
    model = HashEmbedder()
    with _memory(tmp_path, embedder=model) as mem:
        first = mem.search("what is a slot?", k=3, mode="dense")
        calls = model.calls
        again = mem.search("  what is   a slot? ", k=3, mode="dense")  # whitespace differs only
        assert model.calls == calls
        assert [h.id for h in again] == [h.id for h in first]
        assert all(h.cached and h.cache_similarity is None for h in again)
        assert all(isinstance(h, CachedHit) for h in again) and again == first  # equal hits
        assert not any(h.cached or isinstance(h, CachedHit) for h in first)
        mem.search(["what is a slot?", "another question"], k=3, mode="dense")
        assert model.calls == calls + 1  # only the new text was embedded
        emb = mem.stats()["cache"]["embedding"]
        assert emb["hits"] == 2 and emb["misses"] == 2


def test_bypass_and_stats_keys(tmp_path: Path) -> None:
    q = unit_vectors(1, DIM, seed=9)[0]
    with _memory(tmp_path) as mem:
        mem.search(q, k=5)
        before = mem.stats()["cache"]
        hits = mem.search(q, k=5, cache=False)
        after = mem.stats()["cache"]
        assert not any(h.cached for h in hits)
        assert (before["hits"], before["misses"]) == (after["hits"], after["misses"]) == (0, 1)
        assert all(h.cached for h in mem.search(q, k=5))
        stats = mem.stats()["cache"]
        assert STATS_KEYS <= set(stats) and stats["hit_rate"] == 0.5 and stats["bytes"] > 0
        with pytest.raises(InvalidInputError):
            mem.search(q, k=5, cache="yes")


@pytest.mark.parametrize("cache", [None, False, CacheConfig(enabled=False), {"enabled": False}])
def test_cache_off(tmp_path: Path, cache) -> None:
    with Memory.create(tmp_path / "m", dim=DIM, cache=cache) as mem:
        mem.add(["a", "b"], vectors=unit_vectors(2, DIM))
        mem.search(unit_vectors(1, DIM)[0], k=1)
        assert not mem.search(unit_vectors(1, DIM)[0], k=1)[0].cached
        assert mem.stats()["cache"] == {"enabled": False}


def test_config_is_checked() -> None:
    with pytest.raises(InvalidInputError, match="unknown CacheConfig keys"):
        CacheConfig.from_dict({"max_byte": 10})
    for bad in ({"threshold": 0.0}, {"threshold": 1.5}, {"max_bytes": -1}, {"ttl_seconds": 0}):
        with pytest.raises(InvalidInputError):
            CacheConfig(**bad)
    assert DEFAULT_THRESHOLD == 1.0  # measured: see bench/cache_threshold_study.py


def test_semantic_hit_is_marked(tmp_path: Path) -> None:
    q = unit_vectors(1, DIM, seed=3)[0]
    near = q + 0.05 * unit_vectors(1, DIM, seed=4)[0]
    near /= np.linalg.norm(near)
    cos = float(q @ near)
    assert 0.99 <= cos < 1.0
    with _memory(tmp_path, threshold=0.99) as mem:
        mem.search(q, k=4)
        hits = mem.search(near, k=4)
        assert all(h.cached and h.cache_similarity == pytest.approx(cos, abs=1e-6) for h in hits)
        stats = mem.stats()["cache"]
        assert stats["semantic_hits"] == 1
        assert stats["semantic_similarity_min"] == pytest.approx(cos, abs=1e-6)
    with _memory(tmp_path / "exact") as mem:  # the default, 1.0 = exact hits only
        mem.search(q, k=4)
        assert not any(h.cached for h in mem.search(near, k=4))


def test_lru_by_bytes(tmp_path: Path) -> None:
    queries = unit_vectors(6, DIM, seed=5)
    with _memory(tmp_path) as mem:
        mem.search(queries[0], k=5)
        one = mem.stats()["cache"]["bytes"]
    with _memory(tmp_path / "small", max_bytes=int(one * 3.5)) as mem:
        for q in queries[:3]:
            mem.search(q, k=5)
        mem.search(queries[0], k=5)  # refresh 0: 1 is now least recently used
        mem.search(queries[3], k=5)
        stats = mem.stats()["cache"]
        assert stats["evictions"] == 1 and stats["entries"] == 3
        assert stats["bytes"] <= stats["max_bytes"]
        assert mem.search(queries[0], k=5)[0].cached
        assert not mem.search(queries[1], k=5)[0].cached
        big = mem.search(queries[4], k=100)  # heavier than the whole budget: never cached
        assert not mem.search(queries[4], k=100)[0].cached and len(big) == 100


def test_ttl(tmp_path: Path) -> None:
    q = unit_vectors(1, DIM, seed=7)[0]
    with _memory(tmp_path, ttl_seconds=0.2) as mem:
        mem.search(q, k=3)
        assert mem.search(q, k=3)[0].cached
        time.sleep(0.3)
        assert not mem.search(q, k=3)[0].cached
        assert mem.stats()["cache"]["expired"] == 1


def test_delete_patches_short_entries_and_drops_full_ones(tmp_path: Path) -> None:
    q = unit_vectors(1, DIM, seed=8)[0]
    with _memory(tmp_path, n=10) as mem:
        full = mem.search(q, k=3)
        short = mem.search(q, k=50)  # all 10 slots: nothing else can enter
        mem.delete([full[0].id])
        after = mem.search(q, k=50)
        assert after[0].cached and [h.id for h in after] == [h.id for h in short[1:]]
        assert not mem.search(q, k=3)[0].cached  # the k=3 entry could not know its 4th hit
        mem.add(["close"], ids=["close"], metadata={"g": 1}, vectors=q)
        top = mem.search(q, k=3)
        assert top[0].cached and top[0].id == "close"
        assert mem.search(q, k=3, where={"g": 1})[0].id == "close"


def test_read_only_reader_sees_other_process_writes(tmp_path: Path) -> None:
    q = unit_vectors(1, DIM, seed=10)[0]
    with _memory(tmp_path) as writer:
        with Memory.open(tmp_path / "m", embedder=HashEmbedder(), read_only=True) as reader:
            reader.search(q, k=3)
            assert reader.search(q, k=3)[0].cached
            writer.add(["new"], ids=["new"], vectors=q)
            hits = reader.search(q, k=3)
            assert hits[0].id == "new" and not hits[0].cached
            assert reader.stats()["cache"]["clears"] == 1


def test_version_guard_clears_on_a_missed_write() -> None:
    cache = ResultCache(DIM, 1 << 20, DEFAULT_THRESHOLD, None, version=5)
    q = unit_vectors(1, DIM)[0]
    cache.put(q, group_key(3, None), None, [0.5], [1], [("a", "t", "{}", None)], version=5)
    assert cache.lookup(q, group_key(3, None)) is not None
    empty = np.empty(0, np.int64)
    cache.apply_write(7, empty, empty, np.empty((0, DIM), np.float32), [], lambda w, a: set())
    assert cache.lookup(q, group_key(3, None)) is None and cache.version == 7
    cache.put(q, group_key(3, None), None, [0.5], [1], [("a", "t", "{}", None)], version=6)
    assert len(cache) == 0  # a result computed before the latest write is refused


def test_threads_search_while_writing(tmp_path: Path) -> None:
    pool = unit_vectors(12, DIM, seed=11)
    errors: list[BaseException] = []
    with _memory(tmp_path, n=300) as mem:

        def searcher(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                for _ in range(300):
                    hits = mem.search(pool[rng.integers(len(pool))], k=5)
                    assert len(hits) == 5 and len({h.id for h in hits}) == 5
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def writer() -> None:
            try:
                for i in range(60):
                    mem.upsert(
                        [f"w{i}"],
                        ids=[f"s{i}"],
                        vectors=pool[i % len(pool)] + 0.1 * unit_vectors(1, DIM, seed=100 + i)[0],
                    )
                    if i % 3 == 0:
                        mem.delete([f"s{100 + i}"])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=searcher, args=(s,)) for s in range(3)]
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for q in pool:  # after the dust settles every cached entry equals a fresh search
            assert _same(mem.search(q, k=5), mem.search(q, k=5, cache=False))
        assert mem.stats()["cache"]["hits"] > 0


def test_hard_negatives_not_served_at_default_threshold(tmp_path: Path, embedder) -> None:
    with Memory.create(tmp_path / "m", embedder=embedder) as mem:
        mem.add(
            [f"{a} {b}" for a, b in HARD_NEGATIVE_PAIRS],
            vectors=unit_vectors(len(HARD_NEGATIVE_PAIRS), embedder.dim),
        )
        for question, negative in HARD_NEGATIVE_PAIRS:
            mem.search(question, k=2, mode="dense")
            assert not any(h.cached for h in mem.search(negative, k=2, mode="dense")), negative
        upper = HARD_NEGATIVE_PAIRS[0][0].upper()
        assert mem.search(upper, k=2, mode="dense")[0].cached  # uncased model


def test_compaction_clears_results(tmp_path: Path) -> None:
    """Sealed IVF shards answer approximately: results cached before a seal are not reused."""
    q = unit_vectors(1, DIM, seed=12)[0]
    with _memory(tmp_path, n=300) as mem:
        mem.search(q, k=5)
        mem.compact()
        hits = mem.search(q, k=5)
        assert not hits[0].cached and mem.stats()["cache"]["clears"] == 1
        assert _same(hits, mem.search(q, k=5, cache=False))
        assert mem.search(q, k=5)[0].cached
