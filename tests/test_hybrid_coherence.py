"""Lexical and hybrid search stay coherent through a long random mix of writes and searches.

A seeded interleaving of adds, upserts, deletes and lexical / hybrid searches (single texts
and batches, with and without `where`, convex and RRF fusion) runs on a memory with the query
cache on. Every search is repeated with `cache=False` and must match exactly: the cache may
only ever serve what a fresh search would return. Every CHECK_EVERY operations (and at the
end) the live slots are read back with `iter_vectors()`, checked against the test's own model
of what should be stored, and loaded into a fresh memory; every search of the pool must then
give the same ids, texts, metadata and per-leg ranks there, with scores equal to SCORE_TOL.
That catches what a cache comparison cannot: BM25 statistics (document count, mean length,
document frequencies) that drift from the live slots as FTS5 'delete' commands pile up, words
left indexed for a deleted or replaced slot, a dense leg that keeps a retired vector.

Why the order must match exactly, not just up to ties: BM25 and fused ties are broken by slot
address, and a fresh memory hands out new addresses. The fresh memory is filled in the live
slots' address order (the model keeps write order, which is address order: addresses only
grow, and an upsert gives a new one), so the two memories' addresses sort alike and every tie
breaks the same way; the dense legs hold the same vectors in the same order, so FAISS
computes bit-identical inner products. BM25 is recomputed from integer counts in both.

Texts are synthetic sentences (bench/_words.py: Zipf word frequencies over a small
vocabulary) plus rare words, some with a title in metadata (the title column), so every write
moves the BM25 statistics. Vectors are precomputed by a cheap deterministic bag-of-words
embedder, also used for the hybrid queries' dense leg, so no model loads.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _words import ZipfWords

from rag_memory import Hit, Memory
from rag_memory.embed import Embedder

DIM = 32
SCORE_TOL = 1e-9
CHECK_EVERY = 250
VOCABULARY = ZipfWords(300, exponent=1.1)
RARE_WORDS = [f"zq{i:04x}" for i in range(120)]
WHERES: list[dict | None] = [None, None, {"g": 1}, {"g": {"$in": [0, 2]}}, {"n": {"$lt": 500}}]
HYBRIDS: list[dict | None] = [
    None,
    {"fusion": "rrf"},
    {"alpha": 0.3, "fetch_k": 20},
    {"fusion": "rrf", "fetch_k": 15},
]
_WORD = re.compile(r"\w+")


class WordVectorEmbedder(Embedder):
    """A stand-in model: the normalised sum of a fixed random vector per (lowercased) word,
    so texts sharing words embed close and the hybrid legs partly agree, as with a real
    model; whitespace never changes an embedding."""

    def __init__(self) -> None:
        super().__init__("test/word-vector-embedder")
        self._words: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return DIM

    def _word(self, word: str) -> np.ndarray:
        if word not in self._words:
            seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
            self._words[word] = np.random.default_rng(seed).standard_normal(DIM)
        return self._words[word]

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        rows = [
            sum((self._word(w) for w in _WORD.findall(t.lower())), np.ones(DIM) * 1e-3)
            for t in texts
        ]
        out = np.array(rows, dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@dataclass(frozen=True)
class Search:
    """One search of the pool: a text or a batch of texts, k, filter, mode, fusion."""

    query: str | tuple[str, ...]
    k: int
    where: dict | None
    mode: str | None  # None: the default for text, hybrid on a memory with a lexical index
    hybrid: dict | None

    def run(self, mem: Memory, cache: bool) -> list[list[Hit]]:
        query = self.query if isinstance(self.query, str) else list(self.query)
        found = mem.search(
            query, self.k, self.where, mode=self.mode, hybrid=self.hybrid, cache=cache
        )
        return [found] if isinstance(self.query, str) else found  # type: ignore[list-item]


class Workload:
    """The random slots and searches of one run, and the model of what the memory holds:
    id -> (text, metadata, vector) in write order (= address order)."""

    def __init__(self, seed: int, embedder: WordVectorEmbedder) -> None:
        self.rng = np.random.default_rng(seed)
        self.embedder = embedder
        self.live: dict[str, tuple[str, dict, np.ndarray]] = {}
        self.next_id = 0

    def slots(self, n: int) -> tuple[list[str], list[dict], np.ndarray]:
        rng = self.rng
        texts, metadata = [], []
        for body in VOCABULARY.sentences(rng, n, 3, 12):
            words = body.split()
            if rng.random() < 0.35:
                words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(RARE_WORDS)))
            meta: dict[str, Any] = {"g": int(rng.integers(0, 4)), "n": int(rng.integers(0, 1000))}
            if rng.random() < 0.25:
                meta["title"] = VOCABULARY.sentences(rng, 1, 1, 3)[0]
                words.insert(0, meta["title"])
            texts.append(" ".join(words))
            metadata.append(meta)
        # noise on top of the words' vector: no two slots tie exactly in the dense leg
        vectors = self.embedder.encode(texts) + 0.05 * rng.standard_normal((n, DIM))
        return texts, metadata, vectors.astype(np.float32)

    def query_text(self) -> str:
        text = VOCABULARY.sentences(self.rng, 1, 1, 4)[0]
        return f"{text} {self.rng.choice(RARE_WORDS)}" if self.rng.random() < 0.3 else text

    def search_pool(self, size: int) -> list[Search]:
        rng, pool = self.rng, []
        for _ in range(size):
            roll = rng.random()
            if roll < 0.2:  # a batch, sometimes holding one text twice
                texts = [self.query_text() for _ in range(int(rng.integers(2, 5)))]
                query: str | tuple[str, ...] = tuple(texts + texts[:1] * int(rng.random() < 0.3))
            elif roll < 0.3 and pool and isinstance(pool[-1].query, str):
                query = "  " + pool[-1].query.replace(" ", "   ") + " "  # same words, spaced
            else:
                query = self.query_text()
            mode = [None, "lexical", "hybrid"][int(rng.integers(0, 3))]
            pool.append(
                Search(
                    query,
                    int(rng.choice([1, 5, 10])),
                    WHERES[int(rng.integers(0, len(WHERES)))],
                    mode,
                    None if mode == "lexical" else HYBRIDS[int(rng.integers(0, len(HYBRIDS)))],
                )
            )
        return pool

    def pick(self, count: int) -> list[str]:
        ids = list(self.live)
        return list(dict.fromkeys(ids[int(i)] for i in self.rng.integers(0, len(ids), count)))

    def add(self, mem: Memory, n: int) -> None:
        ids = [f"id{self.next_id + i}" for i in range(n)]
        self.next_id += n
        self._write(mem.add, ids)

    def upsert(self, mem: Memory, ids: list[str]) -> None:
        self._write(mem.upsert, ids)

    def _write(self, write: Any, ids: list[str]) -> None:
        texts, metadata, vectors = self.slots(len(ids))
        write(texts, ids=ids, metadata=metadata, vectors=vectors)
        for slot_id, text, meta, vector in zip(ids, texts, metadata, vectors, strict=True):
            self.live.pop(slot_id, None)  # a replaced slot moves to the newest address
            self.live[slot_id] = (text, meta, vector)

    def delete(self, mem: Memory, ids: list[str]) -> None:
        mem.delete(ids)
        for slot_id in ids:
            del self.live[slot_id]


def _hit_differences(got: list[Hit], want: list[Hit], same_memory: bool) -> list[str]:
    """What differs between two hit lists: ids, texts, metadata and leg ranks exactly, the
    addresses too within one memory, scores (and leg scores) to SCORE_TOL."""

    def exact(h: Hit) -> tuple:
        ranks = None if h.legs is None else (h.legs[1], h.legs[3])
        return (h.id, h.text, h.metadata_json, ranks, h.address if same_memory else None)

    def scores(h: Hit) -> list[float | None]:
        return [h.score] + ([] if h.legs is None else [h.legs[0], h.legs[2]])

    if [exact(h) for h in got] != [exact(h) for h in want]:
        return [f"hits {[exact(h)[0] for h in got]} != {[exact(h)[0] for h in want]}"]
    out = []
    for g, w in zip(got, want, strict=True):
        for a, b in zip(scores(g), scores(w), strict=True):
            if (a is None) != (b is None) or (a is not None and abs(a - b) > SCORE_TOL):
                out.append(f"{g.id}: score {a} != {b}")
    return out


def _differences(
    search: Search, got: list[list[Hit]], want: list[list[Hit]], same_memory: bool
) -> list[str]:
    return [
        f"{search}: {problem}"
        for g, w in zip(got, want, strict=True)
        for problem in _hit_differences(g, w, same_memory)
    ]


def _rebuilt(mem: Memory, work: Workload, path: Path) -> Memory:
    """A fresh memory of the live slots, checked against the model first, filled in address
    order with the same texts, ids, metadata and (input) vectors."""
    slots, vectors = [], []
    for chunk, chunk_vectors in mem.iter_vectors(batch=97):
        slots += chunk
        vectors.append(chunk_vectors)
    order = np.argsort([s.address for s in slots])
    assert [slots[i].id for i in order] == list(work.live), "live slots or their order differ"
    stored = np.concatenate(vectors)[order]
    for slot, vector in zip((slots[i] for i in order), stored, strict=True):
        text, meta, written = work.live[slot.id]
        assert (slot.text, slot.metadata) == (text, meta), slot.id
        assert np.allclose(vector, written / np.linalg.norm(written), atol=1e-6), slot.id
    fresh = Memory.create(path, embedder=work.embedder, dim=DIM, cache=None)
    ids = list(work.live)
    fresh.add(
        [work.live[i][0] for i in ids],
        ids=ids,
        metadata=[work.live[i][1] for i in ids],
        vectors=np.array([work.live[i][2] for i in ids]),
    )
    return fresh


def run_coherence(tmp_path: Path, operations: int, seed: int) -> dict[str, Any]:
    """Run `operations` random operations; returns the counts the tests assert on."""
    work = Workload(seed, WordVectorEmbedder())
    pool = work.search_pool(40)
    problems: list[str] = []
    counts: dict[str, Any] = {"cached_hits": 0, "checks": 0}
    rng = work.rng
    with Memory.create(tmp_path / "live", embedder=work.embedder, dim=DIM) as mem:
        work.add(mem, 300)

        def search(spec: Search) -> list[list[Hit]]:
            cached, fresh = spec.run(mem, cache=True), spec.run(mem, cache=False)
            problems.extend(_differences(spec, cached, fresh, same_memory=True))
            counts["cached_hits"] += sum(h.cached for hits in cached for h in hits)
            return fresh

        def check(step: int) -> None:
            path = tmp_path / f"fresh-{step}"
            with _rebuilt(mem, work, path) as fresh:
                for spec in pool:
                    problems.extend(_differences(spec, search(spec), spec.run(fresh, False), False))
            shutil.rmtree(path)
            counts["checks"] += 1

        last = pool[0]
        for step in range(1, operations + 1):
            op = rng.random()
            if op < 0.5:
                last = last if rng.random() < 0.3 else pool[int(rng.integers(0, len(pool)))]
                search(last)
            elif op < 0.7 or len(work.live) < 150:
                work.add(mem, int(rng.integers(1, 5)))
            elif op < 0.85:
                work.upsert(mem, work.pick(int(rng.integers(1, 3))))
            else:
                work.delete(mem, work.pick(int(rng.integers(1, 4))))
            if step % CHECK_EVERY == 0 or step == operations:
                check(step)
        counts["text_cache"] = mem.stats()["cache"]["text_results"]
    counts["problems"] = problems
    return counts


def _assert_coherent(counts: dict[str, Any], operations: int) -> None:
    problems = counts["problems"]
    assert not problems, f"{len(problems)} mismatches, first: {problems[:5]}"
    assert counts["checks"] == operations // CHECK_EVERY + (operations % CHECK_EVERY > 0)
    text_cache = counts["text_cache"]
    # the cache was exercised: it served entries, and dropped ones a write made stale
    assert text_cache["hits"] > operations // 50 and counts["cached_hits"] > 0, counts
    assert text_cache["dropped_stale"] > operations // 100, counts


def test_coherence_1000_operations(tmp_path: Path) -> None:
    counts = run_coherence(tmp_path, 1000, seed=13)
    _assert_coherent(counts, 1000)


@pytest.mark.slow
def test_coherence_5000_operations(tmp_path: Path) -> None:
    counts = run_coherence(tmp_path, 5000, seed=14)
    _assert_coherent(counts, 5000)


def test_cached_lexical_result_is_not_served_after_a_write(tmp_path: Path) -> None:
    embedder = WordVectorEmbedder()
    work = Workload(3, embedder)
    with Memory.create(tmp_path / "m", embedder=embedder, dim=DIM) as mem:
        work.add(mem, 50)
        query = work.live["id7"][0]
        for mode in ("lexical", "hybrid"):
            first = mem.search(query, k=5, mode=mode)
            again = mem.search(query, k=5, mode=mode)
            assert not any(h.cached for h in first) and all(h.cached for h in again)
            work.add(mem, 1)
            after = mem.search(query, k=5, mode=mode)
            assert not any(h.cached for h in after)
            assert _hit_differences(after, mem.search(query, 5, mode=mode, cache=False), True) == []
        assert mem.stats()["cache"]["text_results"]["dropped_stale"] == 2
