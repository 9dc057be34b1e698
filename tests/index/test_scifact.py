"""On real data (BEIR SciFact), Memory.search equals a plain faiss.IndexFlatIP, id for id."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from rag_memory import Memory


def test_memory_search_equals_faiss_flat_ip(tmp_path: Path, scifact: dict, embedder) -> None:
    vectors, query_vectors = scifact["vectors"], scifact["query_vectors"]
    k = 10
    anchor = faiss.IndexFlatIP(vectors.shape[1])
    anchor.add(vectors)
    expected_scores, expected_rows = anchor.search(query_vectors, k)
    ids = scifact["ids"]
    with Memory.create(tmp_path / "scifact", embedder=embedder) as mem:
        for start in range(0, len(ids), 1000):  # several writes, as a user would
            stop = start + 1000
            mem.add(scifact["texts"][start:stop], ids=ids[start:stop], vectors=vectors[start:stop])
        by_vector = mem.search(query_vectors, k=k)
        # the memory embeds the queries itself (dense: text queries default to hybrid here)
        by_text = mem.search(scifact["queries"], k=k, mode="dense")
    assert len(by_vector) == len(scifact["queries"]) == 809
    assert [[h.id for h in hits] for hits in by_vector] == [
        [ids[r] for r in row] for row in expected_rows
    ]
    np.testing.assert_array_equal(
        np.array([[h.score for h in hits] for hits in by_vector], dtype=np.float32), expected_scores
    )
    same = sum(
        [h.id for h in t] == [h.id for h in v] for t, v in zip(by_text, by_vector, strict=True)
    )
    assert same == len(by_vector), (
        f"text queries disagree with their cached vectors on {len(by_vector) - same} queries"
    )


def test_text_add_embeds_like_the_embedder(tmp_path: Path, scifact: dict, embedder) -> None:
    """Adding texts without vectors stores what the embedder gives (checked on 64 documents)."""
    texts, ids = scifact["texts"][:64], scifact["ids"][:64]
    # the same batch as `add` makes: int8 ONNX scales activations per batch
    expected = embedder.encode(texts)
    with Memory.create(tmp_path / "m", embedder=embedder) as mem:
        mem.add(texts, ids=ids)
        hits = mem.search(expected, k=1)
    assert [h[0].id for h in hits] == ids
    assert min(h[0].score for h in hits) > 0.9999


def test_tiered_memory_keeps_ndcg_of_exact_search(tmp_path: Path, scifact: dict, embedder) -> None:
    """Sealing at a small threshold leaves several routed IVF shards (and an indexed growing
    shard beside them); at a recall target of 0.99 nDCG@10 on the train queries stays within
    0.01 of exact search."""
    from rag_memory.evaluation.metrics import evaluate_run, hits_to_run
    from rag_memory.index.config import IndexConfig

    ids, vectors = scifact["ids"], scifact["vectors"]
    config = IndexConfig(
        seal_threshold=2000,
        shard_groups=6,
        merge_threshold=8,
        expected_vectors=len(ids),
        recall_target=0.99,
    )
    figures = {}
    for name, index in (("exact", None), ("tiered", config)):
        with Memory.create(tmp_path / name, embedder=embedder, index=index, cache=None) as mem:
            for start in range(0, len(ids), 500):
                mem.add(
                    scifact["texts"][start : start + 500],
                    ids=ids[start : start + 500],
                    vectors=vectors[start : start + 500],
                )
            sealed = [s for s in mem.stats()["shards"] if s["sealed"]]
            hits = mem.search(scifact["query_vectors"], k=100)
        means, _ = evaluate_run(scifact["qrels"], hits_to_run(scifact["query_ids"], hits))
        figures[name] = (means["ndcg@10"], len(sealed))
    print(
        f"nDCG@10 exact {figures['exact'][0]:.4f}, tiered {figures['tiered'][0]:.4f} "
        f"({figures['tiered'][1]} sealed shards)"
    )
    assert figures["exact"][1] == 0 and figures["tiered"][1] >= 4
    assert abs(figures["tiered"][0] - figures["exact"][0]) <= 0.01


def test_fusion_sweep_equals_hybrid_search_on_scifact(
    tmp_path: Path, scifact: dict, embedder, shared_data: Path
) -> None:
    """Hybrid retrieval on real data: the eval's sweep, which fuses each query's legs once
    fetched, gives exactly `Memory.search(mode="hybrid")` at several grid points (both
    fusions), its leg-only lines equal the dense and lexical searches, and the titles the
    BEIR reader keeps apart fill the lexical index's title column."""
    from rag_memory.datasets.beir import iter_corpus, load_split
    from rag_memory.evaluation.beir import slot_metadata
    from rag_memory.evaluation.fusion_sweep import SweepLegs, run_sweep
    from rag_memory.evaluation.metrics import evaluate_run, hits_to_run
    from rag_memory.hybrid import HybridConfig

    docs = list(iter_corpus(shared_data / "scifact"))
    assert [d.text for d in docs] == scifact["texts"]  # the fixture's vectors are these texts'
    split = load_split(shared_data / "scifact", "train")
    qids = scifact["query_ids"][:100]
    texts = [split.queries[q] for q in qids]
    qrels = {q: split.qrels[q] for q in qids}
    k = 100
    # the query cache's text -> embedding layer embeds each query once for all the searches
    with Memory.create(tmp_path / "scifact", embedder=embedder) as mem:
        mem.add(
            [d.text for d in docs],
            ids=[d.doc_id for d in docs],
            metadata=[slot_metadata(d) for d in docs],
            vectors=scifact["vectors"],
        )
        legs = SweepLegs(mem, qids, texts, depth=k)
        configs = [
            HybridConfig(),
            HybridConfig(alpha=0.2),
            HybridConfig(alpha=1.0),
            HybridConfig(fusion="rrf", rrf_k=10),
        ]
        for config in configs:
            searched = mem.search(texts, k=k, mode="hybrid", hybrid=config)
            assert legs.compare(config, k, searched)["match"], config
        lexical = mem.search(texts, k=k, mode="lexical")
        dense = mem.search(texts, k=k, mode="dense")
    sweep = run_sweep(legs, qrels, HybridConfig(), k)
    assert sweep["lexical_only"] == evaluate_run(qrels, hits_to_run(qids, lexical))[0]
    assert sweep["dense_only"] == evaluate_run(qrels, hits_to_run(qids, dense))[0]
    direct = evaluate_run(qrels, hits_to_run(qids, searched))[0]  # the RRF k=10 search
    [rrf10] = [p for p in sweep["points"] if p.get("rrf_k") == 10]
    assert {m: rrf10[m] for m in direct} == direct
    # BM25 on SciFact is a strong baseline (0.66-0.68 nDCG@10 published on test)
    assert sweep["lexical_only"]["ndcg@10"] > 0.6
