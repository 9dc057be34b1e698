"""`eval retrieval`: BEIR quality figures and systems figures of a memory, measured in one run
side by side with the exact-FAISS anchor over the same vectors.

Queries are embedded once; the same query vectors go to the memory and to the anchor, so for
an exact memory the quality figures must match to the last digit (`quality.match`). The text
path (`mem.search(list_of_texts)`) is timed as well, to split embedding time from search time.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets.beir import load_split
from ..embed import Embedder
from ..memory import Memory
from . import measure
from .anchor import anchor_from_memory
from .beir import build_memory
from .metrics import METRICS, PRIMARY_METRIC, evaluate_run, hits_to_run, mean_difference

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievalConfig:
    """Everything that decides the figures of one `eval retrieval` run (recorded in
    results.json)."""

    memory: str  # memory directory; built from the dataset's corpus if it does not exist
    dataset: str  # BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv
    split: str  # qrels split, e.g. "test"
    out: str  # results folder
    k: int = 100  # hits retrieved per query (the run depth: Recall@100 needs 100)
    latency_queries: int = 200  # queries timed one at a time (0 = all)
    query_batch_size: int = 64  # embedder batch size for the queries
    embedder: str | None = None  # only used when building; None = all-MiniLM-L6-v2
    build: bool = False  # build the memory even if --memory exists (refused if non-empty)
    seed: int = 0  # picks which queries are timed one at a time


def open_or_build(config: RetrievalConfig) -> tuple[Memory, float | None]:
    """(the memory opened read-only, build seconds or None when it already existed)."""
    path = Path(config.memory)
    if config.build or not (path / "manifest.json").exists():
        logger.info("building %s from %s", path, config.dataset)
        mem, seconds = measure.timed(lambda: build_memory(config.dataset, path, config.embedder))
        mem.close()
    else:
        seconds = None
    return Memory.open(path, read_only=True), seconds


def run_retrieval(config: RetrievalConfig) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the evaluation; returns (results, {system: single-query latencies in seconds})."""
    split = load_split(config.dataset, config.split)
    qids = list(split.queries)
    texts = [split.queries[q] for q in qids]
    mem, build_seconds = open_or_build(config)
    with mem:
        embedder = Embedder(mem.manifest.embedder)
        embedder.encode(texts[:2])  # load the model before the clock starts
        qvecs, embed_s = measure.timed(lambda: embedder.encode(texts, config.query_batch_size))
        anchor = anchor_from_memory(mem)
        k = config.k

        mem.search(qvecs[:2], k=k)  # warm-up: first search pays for lazy setup
        hits, mem_batch_s = measure.timed(lambda: mem.search(qvecs, k=k))
        anchor_run, anchor_batch_s = measure.timed(lambda: anchor.run(qids, qvecs, k))
        mem.search(texts[:2], k=k)  # loads the memory's own embedder
        _, text_path_s = measure.timed(lambda: mem.search(texts, k=k))

        mem_means, mem_per_q = evaluate_run(split.qrels, hits_to_run(qids, hits))
        anc_means, anc_per_q = evaluate_run(split.qrels, anchor_run)

        rng = np.random.default_rng(config.seed)
        n_lat = len(qids) if config.latency_queries <= 0 else min(config.latency_queries, len(qids))
        order = rng.permutation(len(qids))[:n_lat]
        lat = {
            "memory": measure.latencies(
                lambda i: mem.search(qvecs[order[i] : order[i] + 1], k=k),
                n_lat,
                desc="memory latency",
            ),
            "exact_faiss": measure.latencies(
                lambda i: anchor.search(qvecs[order[i] : order[i] + 1], k),
                n_lat,
                desc="exact latency",
            ),
        }
        figures = measure.memory_figures(mem.stats())
        n_slots = len(mem)
        manifest_embedder = mem.manifest.embedder

    nq = len(qids)
    per_system: dict[str, dict[str, Any]] = {
        "memory": {
            "latency": measure.latency_summary(lat["memory"]),
            "batch_seconds": mem_batch_s,
            "batch_qps": nq / mem_batch_s,
        },
        "exact_faiss": {
            "latency": measure.latency_summary(lat["exact_faiss"]),
            "batch_seconds": anchor_batch_s,
            "batch_qps": nq / anchor_batch_s,
            "index_bytes": anchor.nbytes,
        },
    }
    max_diff = max(abs(mem_per_q[q][m] - anc_per_q[q][m]) for q in qids for m in METRICS)
    results = {
        "task": "retrieval",
        "config": asdict(config),
        "dataset": {
            "path": str(config.dataset),
            "split": config.split,
            "queries": nq,
            "judgements": sum(len(v) for v in split.qrels.values()),
            "memory_slots": n_slots,
            "anchor_vectors": len(anchor),
        },
        "model": manifest_embedder,
        "metrics": list(METRICS),
        "primary_metric": PRIMARY_METRIC,
        "quality": {
            "memory": mem_means,
            "exact_faiss": anc_means,
            "difference": mean_difference(mem_means, anc_means),
            "max_per_query_difference": max_diff,
            "match": max_diff == 0.0,
        },
        "systems": {
            **per_system,
            "ratios_memory_over_exact": {
                "latency_p50": measure.ratio(
                    per_system["memory"]["latency"]["p50_ms"],
                    per_system["exact_faiss"]["latency"]["p50_ms"],
                ),
                "latency_p99": measure.ratio(
                    per_system["memory"]["latency"]["p99_ms"],
                    per_system["exact_faiss"]["latency"]["p99_ms"],
                ),
                "batch_qps": measure.ratio(
                    per_system["memory"]["batch_qps"], per_system["exact_faiss"]["batch_qps"]
                ),
            },
            "text_path": {
                "seconds": text_path_s,
                "qps": nq / text_path_s,
                "embedding_seconds": embed_s,
                "search_seconds": mem_batch_s,
                "embedding_share": embed_s / (embed_s + mem_batch_s),
            },
            "build_seconds": build_seconds if build_seconds is not None else measure.NA,
            "peak_rss_bytes": measure.peak_rss_bytes(),
            **figures,
        },
        "per_query": {"memory": mem_per_q, "exact_faiss": anc_per_q},
    }
    return results, lat
