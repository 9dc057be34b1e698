"""Recency-aware and multi-hop reads: what `search(..., recency_half_life=, hops=)` adds on
top of one plain search.

Recency. A memory the model writes while it works holds facts that change ("Mary moved to
the bathroom" ... "Mary went to the garden"); the latest relevant one is the right one. A
plain multiplicative decay on the score (score * 2^(-age / half_life)) lets a recent slot
about something else beat an older relevant one: on bAbI a statement about John written just
now outranks the one about Mary the question asks for. Recency therefore adds a *bounded*
bonus to the relevance:

    score_i = relevance_i + margin * top * 2^(-max(0, t_newest - t_i) / half_life)

relevance_i is the score the search mode ranks by (cosine, BM25, fused), top the best
candidate's, t_i the slot's write time and t_newest the newest write time among the
candidates within `margin * top` of the top (the only ones recency can lift to first place;
a newer slot counts as age 0). So only the timestamps' own unit matters, never the wall
clock, and the bonus lies in [0, margin * top]: a slot can rise only past slots at most a
fraction `margin` of the top score more relevant than itself. Recency decides *between
relevant slots* (of near-equal relevance) and never lifts an unrelated one over a relevant
one; scaling by the top score makes one margin mean the same in every mode (a cosine of 0.4,
a BM25 of 12, a fused 1.0). A slot without a write time gets no bonus. This is the
"relevance + recency" score of Generative Agents (Park et al., UIST 2023) with the recency
term capped by a margin instead of weighted freely; `RecallConfig.margin`'s default was
measured on the bAbI training files (README, "Memory that changes").

Multi-hop. Memory Networks read recursively: the second hop's query is the question plus what
the first hop read, u2 = u1 + o1 (Weston et al. 2015; Sukhbaatar et al., "End-To-End Memory
Networks", NeurIPS 2015), which is how "Where is the football?" reaches "John went to the
kitchen" through "John picked up the football". Here hop h reads its share of the k slots
(k split as evenly as possible, earlier hops first), and the next query is formed either
from text (the question followed by the texts just read, searched in the same mode) or in
embedding space (the normalised sum of the question's embedding and the softmax-weighted
stored vectors of what was read, searched densely: MemN2N's u + o with the slots' own
keys). Each hop skips the slots earlier hops read;
every hit carries the hop that read it. `hops=1` with no half-life is the plain search,
untouched.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .types import Hit
from .validation import check_int, config_from_dict, is_number, shown

# How the next hop's query is formed from the current one and what the hop read: the read
# texts appended ("text") or only their words the query lacks ("new_words"); the read slots'
# stored vectors added to the query vector ("vector", MemN2N's u + o) or only their part
# orthogonal to it ("new_vector").
HOP_QUERIES = ("text", "new_words", "vector", "new_vector")
_WORD = re.compile(r"\w+")
MAX_HOPS = 8
DEFAULT_MARGIN = 0.25
DEFAULT_FETCH_K = 100
# Measured on 300 bAbI task 2 training questions (dense, new_words, recency 0.5 lines):
# both supporting facts read by 2 hops 0.483 at 0, 0.563 at 0.3, 0.687 at 0.6, 0.710 at 0.8,
# 0.657 at 1.0.
DEFAULT_DIVERSITY = 0.8
# Weights of the slots a hop read in the next hop's query vector: softmax(relevance / T),
# the generator's default temperature (generate.config.DEFAULT_TEMPERATURE) for cosines.
HOP_TEMPERATURE = 0.05

Search = Callable[[Any, int], list[Hit]]  # (query text or vector, k) -> hits, best first
# hits -> (those still stored, their stored unit vectors)
StoredVectors = Callable[[list[Hit]], tuple[list[Hit], np.ndarray]]


@dataclass(frozen=True)
class RecallConfig:
    """The finer settings of recency-aware and multi-hop reads (`search(..., recall=...)`).

    Attributes:
        margin: the largest recency bonus as a fraction of the top candidate's score (the
            relevance gap recency may close; see above).
        hop_query: how the next hop's query is formed, "text" or "vector".
        fetch_k: candidates each hop takes from the search before recency re-ranks them
            (at least the hop's own k).
        diversity: from hop 2 on, each candidate loses this fraction of the top score times
            its highest cosine to a slot already read (maximal marginal relevance), so a hop
            reads what adds to the chain rather than a near copy of its last link.
    """

    margin: float = DEFAULT_MARGIN
    hop_query: str = "new_words"
    fetch_k: int = DEFAULT_FETCH_K
    diversity: float = DEFAULT_DIVERSITY

    def __post_init__(self) -> None:
        m = self.margin
        if not is_number(m) or not math.isfinite(m) or m < 0:
            raise InvalidInputError(f"RecallConfig.margin must be a number >= 0, got {shown(m)}")
        object.__setattr__(self, "margin", float(m))
        if self.hop_query not in HOP_QUERIES:
            raise InvalidInputError(
                f"RecallConfig.hop_query must be one of {HOP_QUERIES}, got {self.hop_query!r}"
            )
        object.__setattr__(self, "fetch_k", check_int(self.fetch_k, "RecallConfig.fetch_k"))
        d = self.diversity
        if not is_number(d) or not 0 <= d <= 1:
            raise InvalidInputError(f"RecallConfig.diversity must be in [0, 1], got {shown(d)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RecallConfig:
        return config_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_RECALL = RecallConfig()


def resolve_recall(recall: RecallConfig | dict | None) -> RecallConfig:
    if recall is None:
        return DEFAULT_RECALL  # frozen: one shared instance, not a new one per search
    if isinstance(recall, dict):
        return RecallConfig.from_dict(recall)
    if isinstance(recall, RecallConfig):
        return recall
    raise InvalidInputError(f"recall must be a RecallConfig, a dict or None, got {shown(recall)}")


def check_half_life(half_life: Any) -> float | None:
    if half_life is None:
        return None
    if not is_number(half_life) or not math.isfinite(half_life) or half_life <= 0:
        raise InvalidInputError(
            f"recency_half_life must be a finite number > 0 (in the unit of the write "
            f"times) or None, got {shown(half_life)}"
        )
    return float(half_life)


def check_hops(hops: Any, k: int) -> int:
    hops = check_int(hops, "hops", maximum=MAX_HOPS)
    if hops > k:
        raise InvalidInputError(f"hops={hops} needs k >= hops (each hop reads a slot), got k={k}")
    return hops


def hop_shares(k: int, hops: int) -> list[int]:
    """How many of the k slots each hop reads: as even as possible, earlier hops first."""
    base, extra = divmod(k, hops)
    return [base + (1 if h < extra else 0) for h in range(hops)]


def with_recency(
    hits: Sequence[Hit], half_life: float | None, margin: float
) -> list[tuple[float, float, Hit]]:
    """(score, relevance, hit) per candidate, best first (ties by address): relevance plus
    the bounded recency bonus (module docstring); without a half-life, relevance alone."""
    if not hits:
        return []
    best = max(h.score for h in hits)
    reach = margin * max(best, 0.0)  # the largest bonus, in the mode's own score unit
    # the newest of the slots recency may lift to the top: those within reach of the best
    newest = max(
        (h.written_at for h in hits if h.score >= best - reach and h.written_at is not None),
        default=None,
    )
    scored = []
    for hit in hits:
        t, bonus = hit.written_at, 0.0
        if half_life is not None and t is not None and newest is not None:
            bonus = reach * 2.0 ** (-max(0.0, newest - t) / half_life)
        scored.append((hit.score + bonus, hit.score, hit))
    scored.sort(key=lambda item: (-item[0], item[2].address))
    return scored


def read_with_recall(
    query: Any,
    k: int,
    *,
    search: Search,
    dense_search: Search,
    stored_vectors: StoredVectors,
    query_vector: Callable[[str], np.ndarray],
    half_life: float | None,
    hops: int,
    config: RecallConfig,
) -> list[Hit]:
    """The hits of a recency-aware and/or multi-hop read of one query (text or vector):
    hop 1's hits first, then hop 2's, each ranked by `with_recency`. `search` runs the
    caller's mode; `dense_search` takes the vector queries of "vector" hops."""
    by_text = config.hop_query in ("text", "new_words") and isinstance(query, str)
    read: set[int] = set()
    out: list[Hit] = []
    current, vector = query, None
    for hop, share in enumerate(hop_shares(k, hops), start=1):
        run = search if hop == 1 or by_text else dense_search
        fetch = max(share, config.fetch_k) + len(read)
        candidates = [h for h in run(current, fetch) if h.address not in read]
        if hop > 1 and config.diversity and candidates:
            candidates = _diversified(candidates, out, stored_vectors, config.diversity)
        ranked = with_recency(candidates, half_life, config.margin)
        hits = [hit.reread(score, hop, relevance) for score, relevance, hit in ranked[:share]]
        out.extend(hits)
        read.update(h.address for h in hits)
        if hop == hops or not hits:
            break
        if by_text:
            current = _next_text(current, [h.text for h in hits], config.hop_query)
            continue
        if vector is None:
            vector = query_vector(query) if isinstance(query, str) else np.asarray(query)
        kept, keys = stored_vectors(hits)
        if not kept:  # what the hop read was deleted meanwhile: nothing to add
            break
        relevance = np.array([h.relevance for h in kept], dtype=np.float64)
        weights = np.exp((relevance - relevance.max()) / HOP_TEMPERATURE)
        read_vector = (weights[:, None] / weights.sum() * keys).sum(axis=0)
        if config.hop_query == "new_vector":
            unit = vector / np.linalg.norm(vector)
            vector = read_vector - float(read_vector @ unit) * unit
        else:
            vector = vector + read_vector
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        current = vector
    return out


def _next_text(query: str, read: list[str], how: str) -> str:
    """The next hop's query text: the read texts appended, or only their new words."""
    if how == "text":
        return " ".join([query, *read])
    seen = {w.casefold() for w in _WORD.findall(query)}
    new = [w for text in read for w in _WORD.findall(text) if w.casefold() not in seen]
    return " ".join(dict.fromkeys(new)) or query


def _diversified(
    candidates: list[Hit], read: list[Hit], stored_vectors: StoredVectors, weight: float
) -> list[Hit]:
    """Candidates rescored by maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998):
    minus `weight` x the top score x their highest cosine to a slot already read, so a
    later hop prefers what adds to what was read over a near copy of it."""
    kept, keys = stored_vectors(candidates)
    _, read_keys = stored_vectors(read)
    if not kept or not len(read_keys):
        return candidates
    penalty = weight * max(kept[0].score, 0.0) * (keys @ read_keys.T).max(axis=1)
    return [
        h.reread(h.score - float(p), h.hop, h.score) for h, p in zip(kept, penalty, strict=True)
    ]
