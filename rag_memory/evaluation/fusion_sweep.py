"""The fusion sweep of `eval retrieval`: the hybrid figures over the fusion parameters
(convex alpha from 0 to 1, RRF k), the measurement that picks `HybridConfig`'s defaults.

Each leg's ranking does not depend on the fusion parameters, so every query's dense and
lexical top-`depth` are fetched once, through `Memory.search` (mode "dense" / "lexical",
text queries, the same calls the hybrid mode makes inside), and every sweep point fuses them
in Python with the library's own `rag_memory.hybrid.fuse`. That this equals
`Memory.search(mode="hybrid")` is checked, not assumed (`SweepLegs.compare`): a sweep of some
other fusion would pick defaults for a search nobody runs. The grid follows Bruch et al.,
"An Analysis of Fusion Functions for Hybrid Retrieval" (ACM TOIS 2023), who tune the
convex alpha in steps of 0.1 and compare RRF at several k around Cormack et al.'s 60.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from ..datasets.beir import Qrels
from ..hybrid import DENSE, LEXICAL, RRF_K, HybridConfig, fuse
from ..types import Hit, Legs
from .metrics import PRIMARY_METRIC, Run, doc_scores, evaluate_run, hit_doc_id

if TYPE_CHECKING:
    from ..distributed.opening import AnyMemory

logger = logging.getLogger(__name__)

CONVEX_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))  # 0.0, 0.1, ..., 1.0
RRF_KS = (10, 30, RRF_K, 100)
Ranked = list[tuple[float, int, Legs]]  # what `fuse` returns: (score, address, legs)


def _leg(hits: Sequence[Hit]) -> tuple[np.ndarray, np.ndarray]:
    """(scores, addresses) of one leg as `fuse` takes them. Hit scores are the floats the
    search computed (float32 cosines widen exactly to float64), so fusing them gives what
    the hybrid search's own fuse gives."""
    scores = np.fromiter((h.score for h in hits), dtype=np.float64, count=len(hits))
    addrs = np.fromiter((h.address for h in hits), dtype=np.int64, count=len(hits))
    return scores, addrs


class SweepLegs:
    """Each query's dense and lexical top-`depth` from one memory, fused on demand."""

    def __init__(self, mem: AnyMemory, query_ids: Sequence[str], texts: list[str], depth: int):
        self.query_ids = list(query_ids)
        self.depth = depth
        dense = mem.search(texts, k=depth, mode=DENSE)
        lexical = mem.search(texts, k=depth, mode=LEXICAL)
        self.doc_of = {h.address: hit_doc_id(h) for row in (*dense, *lexical) for h in row}
        self.legs = [(_leg(d), _leg(lx)) for d, lx in zip(dense, lexical, strict=True)]

    def fused(self, config: HybridConfig, k: int) -> list[Ranked]:
        return [fuse(config, dense, lexical, k) for dense, lexical in self.legs]

    def run(self, config: HybridConfig, k: int) -> Run:
        """The document-level run of the hybrid search `config` describes."""
        return self._run([[(s, a) for s, a, _ in hits] for hits in self.fused(config, k)])

    def leg_run(self, leg: str, k: int) -> Run:
        """The run of one leg alone (its top-k): the dense-only or lexical-only line."""
        index = (DENSE, LEXICAL).index(leg)
        return self._run(
            [
                list(zip(scores[:k].tolist(), addrs[:k].tolist(), strict=True))
                for scores, addrs in (legs[index] for legs in self.legs)
            ]
        )

    def _run(self, ranked: list[list[tuple[float, int]]]) -> Run:
        """{query id: {doc id: score}} from each query's (score, address) list."""
        return {
            qid: doc_scores([(self.doc_of[a], s) for s, a in hits])
            for qid, hits in zip(self.query_ids, ranked, strict=True)
        }

    def compare(self, config: HybridConfig, k: int, searched: Sequence[Sequence[Hit]]) -> dict:
        """How many queries' fused hits (address, score, legs) differ from those of
        `Memory.search(mode="hybrid", hybrid=config)`; `match` is True when none do."""
        fused = self.fused(config, k)
        mismatched = sum(
            [(a, s, legs) for s, a, legs in mine] != [(h.address, h.score, h.legs) for h in hits]
            for mine, hits in zip(fused, searched, strict=True)
        )
        if mismatched:
            logger.error(
                "the sweep's fusion differs from Memory.search(mode='hybrid') on %d of %d "
                "queries: its figures are not those of the library's hybrid search",
                mismatched,
                len(fused),
            )
        return {
            "hybrid": config.to_dict(),
            "queries": len(fused),
            "mismatched": mismatched,
            "match": mismatched == 0,
        }


def sweep_configs(base: HybridConfig) -> list[HybridConfig]:
    """The grid: convex at every alpha of CONVEX_ALPHAS, RRF at every k of RRF_KS, each with
    `base`'s fetch_k."""
    return [replace(base, fusion="convex", alpha=a) for a in CONVEX_ALPHAS] + [
        replace(base, fusion="rrf", rrf_k=c) for c in RRF_KS
    ]


def _point(config: HybridConfig, means: dict[str, float]) -> dict[str, Any]:
    knob = {"alpha": config.alpha} if config.fusion == "convex" else {"rrf_k": config.rrf_k}
    return {"fusion": config.fusion, **knob, "fetch_k": config.fetch_k, **means}


def run_sweep(legs: SweepLegs, qrels: Qrels, base: HybridConfig, k: int) -> dict[str, Any]:
    """Every grid point's mean metrics, both legs alone, and the best point by the primary
    metric (the first of equals, so the lowest alpha, then the lowest k)."""
    points = [
        _point(config, evaluate_run(qrels, legs.run(config, k))[0])
        for config in tqdm(sweep_configs(base), desc="fusion sweep", unit="point", leave=False)
    ]
    best = max(points, key=lambda p: p[PRIMARY_METRIC])  # max keeps the first of ties
    best_convex = max(
        (p for p in points if p["fusion"] == "convex"), key=lambda p: p[PRIMARY_METRIC]
    )
    best_rrf = max((p for p in points if p["fusion"] == "rrf"), key=lambda p: p[PRIMARY_METRIC])
    return {
        "metric": PRIMARY_METRIC,
        "k": k,
        "depth": legs.depth,
        "dense_only": evaluate_run(qrels, legs.leg_run(DENSE, k))[0],
        "lexical_only": evaluate_run(qrels, legs.leg_run(LEXICAL, k))[0],
        "points": points,
        "best": best,
        "best_convex": best_convex,
        "best_rrf": best_rrf,
    }
