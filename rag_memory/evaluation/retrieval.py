"""`eval retrieval`: BEIR quality figures and systems figures of a memory, per search mode
(dense, lexical, hybrid), measured in one run side by side with the exact-FAISS anchor.

Dense: queries are embedded once; the same query vectors go to the memory and to the anchor,
so for an exact memory the quality figures must match to the last digit (`quality.match`).
Lexical and hybrid take the query texts (`Memory.search(texts, mode=...)`), and so does the
dense text path, timed to split embedding time from search time. A hybrid run also sweeps
the fusion parameters (`fusion_sweep`), checked against the hybrid search itself.

The memory is opened with the query cache off: the same queries are searched several times
(batch, then one at a time), and a cached answer would time a dictionary lookup, not a search.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..datasets.beir import BeirSplit, load_split
from ..distributed.opening import is_sharded, open_read_only
from ..embed import Embedder
from ..errors import InvalidInputError
from ..hybrid import DENSE, HYBRID, SEARCH_MODES, HybridConfig
from . import measure
from .anchor import ExactAnchor, anchor_from_memory
from .beir import build_memory
from .fusion_sweep import SweepLegs, run_sweep
from .metrics import METRICS, PRIMARY_METRIC, evaluate_run, hits_to_run, mean_difference

if TYPE_CHECKING:
    from ..distributed.opening import AnyMemory

logger = logging.getLogger(__name__)

ALL_MODES = "all"
MODE_CHOICES = (*SEARCH_MODES, ALL_MODES)
HYBRID_DEFAULTS = HybridConfig()  # the --fusion/--alpha/--rrf-k/--fetch-k defaults


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
    mode: str = ALL_MODES  # dense, lexical, hybrid or all; dense and its anchor always run
    fusion: str = HYBRID_DEFAULTS.fusion  # the hybrid mode's HybridConfig fields
    alpha: float = HYBRID_DEFAULTS.alpha
    rrf_k: int = HYBRID_DEFAULTS.rrf_k
    fetch_k: int = HYBRID_DEFAULTS.fetch_k

    def __post_init__(self) -> None:
        if self.mode not in MODE_CHOICES:
            raise InvalidInputError(f"mode must be one of {MODE_CHOICES}, got {self.mode!r}")
        self.hybrid()  # a bad fusion setting fails here, before anything is built or embedded

    def hybrid(self) -> HybridConfig:
        return HybridConfig(self.fusion, self.alpha, self.rrf_k, self.fetch_k)

    def modes(self) -> tuple[str, ...]:
        """The modes reported: dense always (the anchor's reference), then those asked for."""
        return SEARCH_MODES if self.mode == ALL_MODES else tuple(dict.fromkeys((DENSE, self.mode)))


def open_or_build(config: RetrievalConfig) -> tuple[AnyMemory, float | None]:
    """(the memory opened read-only without a query cache, build seconds or None when it
    already existed). A sharded memory's root (`rag-memory build --ray`) is opened as one."""
    path = Path(config.memory)
    if config.build or not ((path / "manifest.json").exists() or is_sharded(path)):
        logger.info("building %s from %s", path, config.dataset)
        mem, seconds = measure.timed(lambda: build_memory(config.dataset, path, config.embedder))
        mem.close()
    else:
        seconds = None
    return open_read_only(path, cache=None), seconds


def _latency_order(config: RetrievalConfig, n_queries: int) -> np.ndarray:
    """The queries timed one at a time: a seeded sample of `latency_queries` (0 = all)."""
    rng = np.random.default_rng(config.seed)
    n = n_queries if config.latency_queries <= 0 else min(config.latency_queries, n_queries)
    return rng.permutation(n_queries)[:n]


def _dense_vs_anchor(
    mem: AnyMemory,
    anchor: ExactAnchor,
    split: BeirSplit,
    qvecs: np.ndarray,
    order: np.ndarray,
    k: int,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Dense search by query vectors, memory vs exact FAISS: (quality, per-system speed,
    per-query scores, single-query latencies)."""
    qids = list(split.queries)
    mem.search(qvecs[:2], k=k)  # warm-up: first search pays for lazy setup
    hits, mem_batch_s = measure.timed(lambda: mem.search(qvecs, k=k))
    anchor_run, anchor_batch_s = measure.timed(lambda: anchor.run(qids, qvecs, k))
    mem_means, mem_per_q = evaluate_run(split.qrels, hits_to_run(qids, hits))
    anc_means, anc_per_q = evaluate_run(split.qrels, anchor_run)
    lat = {
        "memory": measure.latencies(
            lambda i: mem.search(qvecs[order[i] : order[i] + 1], k=k),
            len(order),
            desc="memory latency",
        ),
        "exact_faiss": measure.latencies(
            lambda i: anchor.search(qvecs[order[i] : order[i] + 1], k),
            len(order),
            desc="exact latency",
        ),
    }
    nq = len(qids)
    max_diff = max(abs(mem_per_q[q][m] - anc_per_q[q][m]) for q in qids for m in METRICS)
    quality = {
        "memory": mem_means,
        "exact_faiss": anc_means,
        "difference": mean_difference(mem_means, anc_means),
        "max_per_query_difference": max_diff,
        "match": max_diff == 0.0,
    }
    systems = {
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
    return quality, systems, {"dense": mem_per_q, "exact_faiss": anc_per_q}, lat


def _text_mode(
    mem: AnyMemory,
    split: BeirSplit,
    mode: str,
    hybrid: HybridConfig,
    order: np.ndarray,
    k: int,
) -> tuple[list, dict[str, Any], dict[str, Any], np.ndarray]:
    """One mode over the query texts: (hits, figures, per-query scores, single-query
    latencies); the batch and the single queries include embedding where the mode embeds."""
    qids = list(split.queries)
    texts = [split.queries[q] for q in qids]
    hits, seconds = measure.timed(lambda: mem.search(texts, k=k, mode=mode, hybrid=hybrid))
    means, per_query = evaluate_run(split.qrels, hits_to_run(qids, hits))
    lat = measure.latencies(
        lambda i: mem.search(texts[order[i]], k=k, mode=mode, hybrid=hybrid),
        len(order),
        desc=f"{mode} latency",
    )
    figures = {
        "quality": means,
        "latency": measure.latency_summary(lat),
        "batch_seconds": seconds,
        "batch_qps": len(qids) / seconds,
    }
    return hits, figures, per_query, lat


def run_retrieval(config: RetrievalConfig) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the evaluation; returns (results, {system: single-query latencies in seconds})."""
    split = load_split(config.dataset, config.split)
    qids = list(split.queries)
    texts = [split.queries[q] for q in qids]
    modes, hybrid, k = config.modes(), config.hybrid(), config.k
    mem, build_seconds = open_or_build(config)
    with mem:
        for mode in modes:  # warm-up; a memory without a lexical index fails here, early
            mem.search(texts[:2], k=k, mode=mode, hybrid=hybrid)
        embedder = Embedder(mem.manifest.embedder)
        embedder.encode(texts[:2])  # load the model before the clock starts
        qvecs, embed_s = measure.timed(lambda: embedder.encode(texts, config.query_batch_size))
        anchor = anchor_from_memory(mem)
        order = _latency_order(config, len(qids))
        quality, per_system, per_query, lat = _dense_vs_anchor(mem, anchor, split, qvecs, order, k)
        by_mode: dict[str, dict[str, Any]] = {}
        searched: dict[str, list] = {}
        for mode in modes:
            hits, by_mode[mode], scores, seconds = _text_mode(mem, split, mode, hybrid, order, k)
            searched[mode] = hits
            lat[f"{mode} (text)"] = seconds
            if mode != DENSE:
                per_query[mode] = scores
        sweep = None
        if HYBRID in modes:
            legs = SweepLegs(mem, qids, texts, max(k, hybrid.fetch_k))
            sweep = run_sweep(legs, split.qrels, hybrid, k)
            sweep["check"] = legs.compare(hybrid, k, searched[HYBRID])
        stats = mem.stats()
        n_slots = len(mem)
        manifest_embedder = mem.manifest.embedder

    # dense quality is the query-vector run the anchor checks; every mode's timing is by text
    by_mode[DENSE]["quality"] = quality["memory"]
    dense_latency = by_mode[DENSE]["latency"]
    for figures in by_mode.values():
        figures["latency_over_dense"] = {
            f"p{p}": measure.ratio(figures["latency"][f"p{p}_ms"], dense_latency[f"p{p}_ms"])
            for p in measure.PERCENTILES
        }
    nq = len(qids)
    text_path_s = by_mode[DENSE]["batch_seconds"]
    mem_batch_s = per_system["memory"]["batch_seconds"]
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
        "modes": by_mode,
        "hybrid": hybrid.to_dict(),
        "lexical": stats["lexical"],
        "quality": quality,
        **({"sweep": sweep} if sweep is not None else {}),
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
            **measure.memory_figures(stats),
        },
        "per_query": per_query,
    }
    return results, lat
