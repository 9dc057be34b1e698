"""Search modes and the fusion of a dense and a lexical ranking into one (hybrid search).

A hybrid search takes the top `fetch_k` of each leg (FAISS cosine, FTS5 BM25) and fuses them:

* "convex" (the default): each leg's scores are min-max normalised over its own candidates,
  and a slot scores `alpha * dense + (1 - alpha) * lexical`, 0 for a leg that did not return
  it. Raw scores cannot be added (cosines lie in [-1, 1], BM25 is unbounded; Anserini's
  BEIR runs found raw sums no better than BM25 alone), and normalising puts both on [0, 1].
  This is Weaviate's relativeScoreFusion and txtai's convex hybrid; Bruch et al., "An
  Analysis of Fusion Functions for Hybrid Retrieval" (ACM TOIS 2023) found a tuned convex
  combination at least as good as RRF in and out of domain.
* "rrf": reciprocal rank fusion, `sum 1 / (rrf_k + rank)` over the legs that returned the
  slot (Cormack, Clarke and Büttcher, SIGIR 2009; k = 60 as there). It needs no tuning and
  ignores score scales, at the price of ignoring score gaps.

The defaults were chosen on SciFact *train* (README, "Hybrid retrieval"). Ties in the fused
score are broken by slot address, so a fused ranking is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import SearchModeError
from .types import Legs
from .validation import check_int, config_from_dict, is_number

DENSE, LEXICAL, HYBRID = "dense", "lexical", "hybrid"
SEARCH_MODES = (DENSE, LEXICAL, HYBRID)
# The mode of a text query when `mode` is not given and the memory has a lexical index;
# a vector query is always dense. Chosen by measurement on SciFact train (README).
DEFAULT_TEXT_MODE = HYBRID
FUSIONS = ("convex", "rrf")
DEFAULT_ALPHA = 0.5
DEFAULT_FETCH_K = 100
RRF_K = 60


@dataclass(frozen=True)
class HybridConfig:
    """How a hybrid search fuses its legs (`Memory.search(..., hybrid=...)`).

    Attributes:
        fusion: "convex" (min-max normalised scores, weighted by alpha) or "rrf".
        alpha: weight of the dense leg in [0, 1] for "convex" (1 = dense order, 0 = lexical).
        rrf_k: the constant k of reciprocal rank fusion.
        fetch_k: candidates taken from each leg before fusing (at least the search's k).
    """

    fusion: str = "convex"
    alpha: float = DEFAULT_ALPHA
    rrf_k: int = RRF_K
    fetch_k: int = DEFAULT_FETCH_K

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise SearchModeError(
                f"HybridConfig.fusion must be one of {FUSIONS}, got {self.fusion!r}"
            )
        a = self.alpha
        if not is_number(a) or not math.isfinite(a) or not 0.0 <= a <= 1.0:
            raise SearchModeError(f"HybridConfig.alpha must be a number in [0, 1], got {a!r}")
        object.__setattr__(self, "alpha", float(a))
        for name in ("rrf_k", "fetch_k"):
            object.__setattr__(self, name, check_int(getattr(self, name), f"HybridConfig.{name}"))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HybridConfig:
        return config_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> tuple:
        """What makes two hybrid searches' results the same (the query cache's key part)."""
        return (self.fusion, self.alpha if self.fusion == "convex" else self.rrf_k, self.fetch_k)


DEFAULT_HYBRID = HybridConfig()


def resolve_hybrid(hybrid: HybridConfig | dict | None) -> HybridConfig:
    if hybrid is None:
        return DEFAULT_HYBRID  # frozen: one shared instance, not a new one per search
    if isinstance(hybrid, dict):
        return HybridConfig.from_dict(hybrid)
    if isinstance(hybrid, HybridConfig):
        return hybrid
    raise SearchModeError(
        f"hybrid must be a HybridConfig, a dict or None, got {type(hybrid).__name__}"
    )


def check_mode(mode: Any) -> str | None:
    if mode is not None and mode not in SEARCH_MODES:
        raise SearchModeError(f"mode must be one of {SEARCH_MODES} or None, got {mode!r}")
    return mode


def resolve_mode(mode: str | None, is_text: bool, has_lexical: bool) -> str:
    """The mode a search runs in: a vector query is dense (asking for another mode is an
    error); a text query without a mode is hybrid where the memory has a lexical index."""
    if not is_text:
        if mode not in (None, DENSE):
            raise SearchModeError(
                f"mode {mode!r} needs text queries (BM25 scores words); a query vector "
                "can only be searched with mode='dense'"
            )
        return DENSE
    if mode is None:
        return DEFAULT_TEXT_MODE if has_lexical else DENSE
    return mode


def _ranked(scores: np.ndarray, addrs: np.ndarray) -> Iterator[tuple[int, int, float]]:
    """(address, rank from 1, score) of a leg's candidates, FAISS's -1 padding skipped."""
    rank = 0
    for score, addr in zip(scores.tolist(), addrs.tolist(), strict=True):
        if addr >= 0:
            rank += 1
            yield addr, rank, score


def _normalised(scores: list[float]) -> tuple[float, float]:
    """(minimum, span) for min-max normalisation; a leg whose candidates all score the same
    normalises to 1 (span 0 would divide by zero)."""
    low, high = min(scores), max(scores)
    return low, high - low


def fuse(
    config: HybridConfig,
    dense: tuple[np.ndarray, np.ndarray],
    lexical: tuple[np.ndarray, np.ndarray],
    k: int,
) -> list[tuple[float, int, Legs]]:
    """The top-k (fused score, address, legs) of one query from its two legs' (scores,
    addresses), best first."""
    legs: dict[int, list[Any]] = {}
    for leg, (scores, addrs) in enumerate((dense, lexical)):
        for addr, rank, score in _ranked(scores, addrs):
            legs.setdefault(addr, [None, None, None, None])[2 * leg : 2 * leg + 2] = score, rank
    fused: list[tuple[float, int, Legs]] = []
    if config.fusion == "rrf":
        c = config.rrf_k
        for addr, (ds, dr, ls, lr) in legs.items():
            score = sum(1.0 / (c + rank) for rank in (dr, lr) if rank is not None)
            fused.append((score, addr, (ds, dr, ls, lr)))
    else:
        bounds = [
            _normalised([v[2 * leg] for v in legs.values() if v[2 * leg] is not None] or [0.0])
            for leg in (0, 1)
        ]
        weights = (config.alpha, 1.0 - config.alpha)
        for addr, values in legs.items():
            score = 0.0
            for leg, ((low, span), weight) in enumerate(zip(bounds, weights, strict=True)):
                value = values[2 * leg]
                if value is not None:
                    score += weight * ((value - low) / span if span > 0 else 1.0)
            fused.append((score, addr, tuple(values)))
    fused.sort(key=lambda item: (-item[0], item[1]))
    return fused[:k]
