"""Hybrid retrieval (issue 13): the FTS5 lexical index beside the slots, the three search
modes, their fusion, bad input, and memories written before lexical indexes existed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pytest
from helpers import HashEmbedder, unit_vectors

from rag_memory import InvalidInputError, Memory
from rag_memory.errors import LexicalIndexMissingError, SearchModeError
from rag_memory.hybrid import HybridConfig, fuse
from rag_memory.manifest import MANIFEST_NAME
from rag_memory.store.lexical import CONTENT_VIEW, FTS_TABLE, LexicalConfig, match_expression

DIM = 16
TEXTS = [
    "the cat sat on the mat",
    "dogs run fast in the park",
    "a bird sings at dawn over the river",
    "cats and dogs are common pets",
    "the river floods the valley in spring",
    "quantum entanglement of photon pairs",
    "running shoes for a marathon",
    "spring flowers bloom in the valley",
]


def _memory(path: Path, texts: list[str] = TEXTS, **options: object) -> Memory:
    mem = Memory.create(path, embedder=HashEmbedder(DIM), **options)  # type: ignore[arg-type]
    mem.add(
        texts,
        ids=[f"d{i}" for i in range(len(texts))],
        metadata=[{"group": i % 2} for i in range(len(texts))],
    )
    return mem


def test_lexical_search_ranks_by_bm25_with_stemming(tmp_path: Path) -> None:
    with _memory(tmp_path / "m") as mem:
        hits = mem.search("run", k=5, mode="lexical")
        assert [h.id for h in hits][:2] == ["d1", "d6"] or {h.id for h in hits} == {"d1", "d6"}
        assert all(h.lexical_score == h.score and h.dense_score is None for h in hits)
        assert [h.lexical_rank for h in hits] == list(range(1, len(hits) + 1))
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
        # a word no slot holds
        assert mem.search("zebra", k=5, mode="lexical") == []


def test_fts5_syntax_in_queries_is_searched_as_words(tmp_path: Path) -> None:
    texts = [*TEXTS, 'near and or star "quoted" text', "drop table slots --"]
    with _memory(tmp_path / "m", texts) as mem:
        before = (len(mem), mem.stats()["version"])
        for query in ['NEAR(" AND OR *', '")--', "title:cat", "cat*", "^cat", "(cat", "'; DROP"]:
            for mode in ("lexical", "hybrid"):
                mem.search(query, k=3, mode=mode)  # never raises
        hits = mem.search('NEAR(" AND OR *', k=3, mode="lexical")
        assert [h.id for h in hits] == ["d8", "d3"]  # d8 holds near, and, or; d3 "and"
        assert [h.id for h in mem.search('")-- drop', k=3, mode="lexical")] == ["d9"]
        assert (len(mem), mem.stats()["version"]) == before
    assert match_expression('NEAR(" AND OR *') == '"near" OR "and" OR "or"'


def test_query_without_words_falls_back_to_the_dense_leg(tmp_path: Path) -> None:
    """Punctuation only: the lexical leg is empty (documented): lexical mode returns nothing,
    hybrid returns the dense leg's ranking with its lexical figures absent."""
    with _memory(tmp_path / "m") as mem:
        assert match_expression("?!... --") is None
        assert mem.search("?!... --", k=3, mode="lexical") == []
        hybrid = mem.search("?!... --", k=3, mode="hybrid")
        dense = mem.search("?!... --", k=3, mode="dense")
        assert [h.id for h in hybrid] == [h.id for h in dense]
        assert all(h.lexical_rank is None and h.dense_rank is not None for h in hybrid)


def test_bad_mode_arguments_are_clear_errors_and_change_nothing(tmp_path: Path) -> None:
    with _memory(tmp_path / "m") as mem:
        before = (len(mem), mem.stats()["version"])
        vector = unit_vectors(1, DIM)[0]
        cases = [
            (lambda: mem.search("cat", mode="bm25"), SearchModeError, "mode must be one of"),
            (lambda: mem.search(vector, mode="lexical"), SearchModeError, "needs text queries"),
            (lambda: mem.search(vector[None], mode="hybrid"), SearchModeError, "text queries"),
            (lambda: mem.search("cat", hybrid={"alpha": 1.5}), SearchModeError, "alpha"),
            (lambda: mem.search("cat", hybrid={"alpha": float("nan")}), SearchModeError, "alpha"),
            (lambda: mem.search("cat", hybrid={"fusion": "sum"}), SearchModeError, "fusion"),
            (lambda: mem.search("cat", hybrid={"fetch_k": 0}), InvalidInputError, "fetch_k"),
            (lambda: mem.search("cat", hybrid={"beta": 1}), InvalidInputError, "unknown"),
            (lambda: mem.search("cat", hybrid="rrf"), SearchModeError, "HybridConfig"),
            (lambda: mem.search("", mode="lexical"), InvalidInputError, "empty"),
            (lambda: mem.search("   ", mode="hybrid"), InvalidInputError, "empty"),
        ]
        for call, error, words in cases:
            with pytest.raises(error, match=words):
                call()
        assert issubclass(SearchModeError, InvalidInputError)
        assert mem.search(vector, k=2, mode="dense")  # dense is fine for a vector
        assert (len(mem), mem.stats()["version"]) == before


def test_where_filters_run_inside_both_legs(tmp_path: Path) -> None:
    """k hits come back whenever k matching slots hold a query word, even when the unfiltered
    top fetch_k holds none of them."""
    texts = [f"common word filler {i}" for i in range(300)] + [
        f"common word rare{i}" for i in range(5)
    ]
    with Memory.create(tmp_path / "m", embedder=HashEmbedder(DIM)) as mem:
        mem.add(texts, metadata=[{"tag": "a"}] * 300 + [{"tag": "b"}] * 5)
        for mode in ("lexical", "hybrid"):
            hits = mem.search("common", k=5, where={"tag": "b"}, mode=mode, hybrid={"fetch_k": 5})
            assert len(hits) == 5 and all(h.metadata["tag"] == "b" for h in hits), mode
        assert mem.search("common", k=5, where={"tag": "zzz"}, mode="hybrid") == []


def test_hybrid_scores_follow_the_fusion_formulas(tmp_path: Path) -> None:
    with _memory(tmp_path / "m") as mem:
        for fusion in ("convex", "rrf"):
            config = HybridConfig(fusion=fusion, alpha=0.3)
            hits = mem.search("the river valley in spring", k=8, mode="hybrid", hybrid=config)
            dense = mem.search("the river valley in spring", k=100, mode="dense")
            lexical = mem.search("the river valley in spring", k=100, mode="lexical")
            dense_rank = {h.id: r for r, h in enumerate(dense, 1)}
            lexical_rank = {h.id: r for r, h in enumerate(lexical, 1)}
            for h in hits:
                assert h.dense_rank == dense_rank.get(h.id)
                assert h.lexical_rank == lexical_rank.get(h.id)
                if fusion == "rrf":
                    expected = sum(1 / (60 + r) for r in (h.dense_rank, h.lexical_rank) if r)
                else:
                    d = [x.score for x in dense]
                    lx = [x.score for x in lexical]
                    expected = 0.3 * (h.dense_score - min(d)) / (max(d) - min(d))
                    if h.lexical_score is not None:
                        expected += 0.7 * (h.lexical_score - min(lx)) / (max(lx) - min(lx))
                assert h.score == pytest.approx(expected, abs=1e-9)
            assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


def test_alpha_one_is_the_dense_order_and_alpha_zero_leads_with_lexical(tmp_path: Path) -> None:
    with _memory(tmp_path / "m") as mem:
        query = "dogs and cats"
        dense = [h.id for h in mem.search(query, k=4, mode="dense")]
        assert [h.id for h in mem.search(query, k=4, hybrid={"alpha": 1.0})] == dense
        lexical = [h.id for h in mem.search(query, k=100, mode="lexical")]
        by_words = [h.id for h in mem.search(query, k=len(lexical), hybrid={"alpha": 0.0})]
        assert by_words == lexical


def test_fuse_is_deterministic_on_ties() -> None:
    dense = (np.array([0.5, 0.5], np.float32), np.array([7, 3], np.int64))
    lexical = (np.array([], np.float64), np.array([], np.int64))
    fused = fuse(HybridConfig(), dense, lexical, 2)
    assert [a for _, a, _ in fused] == [3, 7]  # equal scores: by address


def test_dense_mode_matches_exact_faiss_for_text_queries(tmp_path: Path) -> None:
    model = HashEmbedder(DIM)
    with _memory(tmp_path / "m") as mem:
        slots, vectors = next(mem.iter_vectors())
        flat = faiss.IndexFlatIP(DIM)
        flat.add(vectors)
        queries = ["cats", "the river", "marathon running"]
        scores, rows = flat.search(model.encode(queries), 5)
        hits = mem.search(queries, k=5, mode="dense")
        for q, per_query in enumerate(hits):
            assert [h.id for h in per_query] == [slots[i].id for i in rows[q]]
            assert [h.score for h in per_query] == pytest.approx(scores[q].tolist(), abs=1e-6)


def test_default_mode_is_hybrid_for_text_and_dense_for_vectors(tmp_path: Path) -> None:
    with _memory(tmp_path / "m") as mem:
        default = mem.search("cats on a mat", k=4)
        assert default == mem.search("cats on a mat", k=4, mode="hybrid")
        assert default[0].dense_rank is not None or default[0].lexical_rank is not None
        vector_hits = mem.search(unit_vectors(1, DIM)[0], k=3)
        assert all(h.legs is None for h in vector_hits)
    with _memory(tmp_path / "n", lexical=False) as mem:
        assert all(h.legs is None for h in mem.search("cats on a mat", k=4))  # dense


def test_title_column_and_weights(tmp_path: Path) -> None:
    """The title column holds metadata["title"]; the body the text without its "title "
    prefix (as `rag-memory build` writes slots), so no word counts twice."""
    texts = ["Zebrafish a note on fins and tails", "fins of many fish, zebrafish included"]
    meta = [{"title": "Zebrafish"}, {}]
    with Memory.create(tmp_path / "m", embedder=HashEmbedder(DIM)) as mem:
        mem.add(texts, ids=["titled", "plain"], metadata=meta)
        assert {h.id for h in mem.search("zebrafish", k=2, mode="lexical")} == {"titled", "plain"}
        mem.reindex(LexicalConfig(title_weight=10.0))
        assert mem.search("zebrafish", k=2, mode="lexical")[0].id == "titled"
        mem.reindex(LexicalConfig(title_weight=0.01))
        assert mem.search("zebrafish", k=2, mode="lexical")[0].id == "plain"
        assert mem.manifest.lexical == LexicalConfig(title_weight=0.01).to_dict()
    with Memory.open(tmp_path / "m", embedder=HashEmbedder(DIM), read_only=True) as mem:
        assert mem.stats()["lexical"]["title_weight"] == 0.01


def test_tokenizer_is_configurable_and_checked(tmp_path: Path) -> None:
    with _memory(tmp_path / "m", lexical={"tokenizer": "unicode61"}) as mem:
        assert [h.id for h in mem.search("running", k=3, mode="lexical")] == ["d6"]  # no stem
        assert mem.manifest.lexical is not None
        assert mem.manifest.lexical["tokenizer"] == "unicode61"
    for bad in ["porter bogus", "unicode61'); DROP TABLE slots; --", ""]:
        with pytest.raises(InvalidInputError, match="tokenizer"):
            Memory.create(tmp_path / "bad", embedder=HashEmbedder(DIM), lexical={"tokenizer": bad})
        assert not (tmp_path / "bad").exists()
    with pytest.raises(InvalidInputError, match="title_key"):
        LexicalConfig(title_key='ti"tle')
    with pytest.raises(InvalidInputError, match="lexical must be"):
        Memory.create(tmp_path / "bad", embedder=HashEmbedder(DIM), lexical="yes")  # type: ignore[arg-type]


def test_deletes_upserts_and_compaction_keep_the_lexical_leg_exact(tmp_path: Path) -> None:
    config = {"seal_threshold": 256, "kind": "ivf_flat", "nlist": 8, "nprobe": 8}
    texts = [f"note {i} word{i % 7} shared" for i in range(600)]
    with Memory.create(tmp_path / "m", embedder=HashEmbedder(DIM), index=config) as mem:
        mem.add(texts, ids=[f"n{i}" for i in range(600)])  # seals along the way
        mem.delete([f"n{i}" for i in range(0, 600, 7)])  # every word0 slot
        mem.upsert(["replaced word0 text"], ids=["n1"])
        assert [h.id for h in mem.search("word0", k=200, mode="lexical")] == ["n1"]
        assert len(mem.search("word3", k=200, mode="lexical")) == 86
        mem.compact()
        assert [h.id for h in mem.search("word0", k=200, mode="lexical")] == ["n1"]
        assert len(mem.search("shared", k=1000, mode="lexical")) == len(mem) - 1
        assert mem.stats()["lexical"]["ready"]


def _make_pre_lexical(path: Path) -> None:
    """Turn a memory into one written before lexical indexes: no FTS table or view in the
    slot table, no "lexical" key (and no checksum, which older manifests lacked)."""
    conn = sqlite3.connect(path / "slots.sqlite")
    conn.execute(f"DROP TABLE {FTS_TABLE}")
    conn.execute(f"DROP VIEW {CONTENT_VIEW}")
    conn.commit()
    conn.close()
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    del manifest["lexical"], manifest["checksum"]
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_a_memory_from_before_lexical_indexes(tmp_path: Path) -> None:
    path = tmp_path / "old"
    _memory(path).close()
    _make_pre_lexical(path)
    with Memory.open(path, embedder=HashEmbedder(DIM), read_only=True) as mem:
        assert len(mem.search("cat", k=3)) == 3  # default falls back to dense
        assert all(h.legs is None for h in mem.search("cat", k=3))
        assert mem.stats()["lexical"]["ready"] is False
        for mode in ("lexical", "hybrid"):
            with pytest.raises(LexicalIndexMissingError, match="rag-memory reindex"):
                mem.search("cat", k=3, mode=mode)
    with Memory.open(path, embedder=HashEmbedder(DIM)) as mem:  # the writer builds it
        assert [h.id for h in mem.search("mat", k=3, mode="lexical")] == ["d0"]
    with Memory.open(path, embedder=HashEmbedder(DIM), read_only=True) as mem:
        assert [h.id for h in mem.search("mat", k=3, mode="lexical")] == ["d0"]


def test_a_memory_without_a_lexical_index_gains_one_by_reindex(tmp_path: Path) -> None:
    with _memory(tmp_path / "m", lexical=False) as mem:
        with pytest.raises(LexicalIndexMissingError):
            mem.search("cat", mode="lexical")
        mem.add(["a mat again"], ids=["late"])
        mem.reindex()
        assert {h.id for h in mem.search("mat", k=3, mode="lexical")} == {"d0", "late"}
    with Memory.open(tmp_path / "m", embedder=HashEmbedder(DIM), read_only=True) as mem:
        assert mem.manifest.lexical == LexicalConfig().to_dict()
        assert {h.id for h in mem.search("mat", k=3, mode="lexical")} == {"d0", "late"}


def test_cached_lexical_results_hold_for_one_version(tmp_path: Path) -> None:
    """A write changes BM25's statistics, so cached lexical / hybrid entries are not patched
    but dropped: the first search after any write is a fresh one."""
    with _memory(tmp_path / "m") as mem:
        for mode in ("lexical", "hybrid"):
            first = mem.search("spring valley", k=3, mode=mode)
            again = mem.search("  spring   valley ", k=3, mode=mode)
            assert again == first and all(h.cached for h in again)
            assert mem.search("spring valley", k=4, mode=mode)[0].cached is False  # other k
        mem.add(["spring spring valley valley"], ids=["new"])
        for mode in ("lexical", "hybrid"):
            after = mem.search("spring valley", k=3, mode=mode)
            assert not any(h.cached for h in after)
            assert after == mem.search("spring valley", k=3, mode=mode, cache=False)
            assert after[0].id == "new"
        stats = mem.stats()["cache"]["text_results"]
        assert stats["hits"] >= 2 and stats["dropped_stale"] >= 2


def test_a_reader_sees_the_writers_words(tmp_path: Path) -> None:
    with _memory(tmp_path / "m") as writer:
        with Memory.open(tmp_path / "m", embedder=HashEmbedder(DIM), read_only=True) as reader:
            assert reader.search("photon", k=3, mode="lexical")[0].id == "d5"
            writer.add(["photon counting detectors"], ids=["late"])
            writer.delete(["d5"])
            assert [h.id for h in reader.search("photon", k=3, mode="lexical")] == ["late"]
