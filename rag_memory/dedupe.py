"""Dedupe on write: which new slots are the same as a stored one (or an earlier one of the
same call), so that `add(..., dedupe=...)` refreshes the stored slot instead of adding a copy.

* "exact": the same text after `normalise_text` (Unicode NFKC, case folded, runs of
  whitespace as one space, leading and trailing punctuation dropped), within the write's scope.
  The slot table keeps `text_key(text)` per live slot, indexed, so finding a stored twin is
  one index lookup; the texts themselves are compared too (a key is a 64-bit digest).
* "near": the cosine of the two embeddings >= `near_duplicates.NEAR_DUPLICATE_COSINE`, and
  `near_duplicates.may_merge` allows it (sentence embeddings put a claim and its negation
  within cosine 0.999 of each other; the guard keeps such pairs apart). Exact twins merge too.

A merged input keeps the id it merged into: the stored slot is rewritten with the new input
(its text, metadata, vector, write time and expiry, the later wording of the same fact), so a
repeated fact counts as just written for recency. Within one call, inputs that are the same
collapse into one slot written with the last of them.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cache.embedding_cache import collapse_whitespace
from .errors import InvalidInputError
from .near_duplicates import NEAR_DUPLICATE_COSINE, may_merge

DEDUPE_MODES = ("exact", "near")
_EDGE_PUNCTUATION = " \t\n.,;:!?\"'`()[]{}"


def normalise_text(text: str) -> str:
    """The form two texts must share to be exact duplicates."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return collapse_whitespace(folded).strip(_EDGE_PUNCTUATION)


def text_key(text: str) -> int:
    """A signed 64-bit digest of `normalise_text(text)`: the slot table's index column."""
    digest = hashlib.blake2b(normalise_text(text).encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little", signed=True)


def check_dedupe(dedupe: Any) -> str | None:
    if dedupe is not None and dedupe not in DEDUPE_MODES:
        raise InvalidInputError(f"dedupe must be None, 'exact' or 'near', got {dedupe!r}")
    return dedupe


# How many stored slots nearest to a new one are tried, best first, for a near twin the
# guard lets it merge with.
NEAR_CANDIDATES = 4

# A stored slot a new input may merge into: (id, text).
Twin = tuple[str, str]


@dataclass
class DedupePlan:
    """What one write does after dedupe.

    Attributes:
        ids: the id each input ends up under, in input order (what `add` returns).
        write: the input positions written (one per group of duplicates: its last input).
        write_ids: the id each written position is stored under.
        merged: input position -> the id of the slot it merged into, for every input that
            made no slot of its own.
        rewrite: ids of stored slots rewritten by a merge (replaced by their twin's write).
    """

    ids: list[str]
    write: list[int]
    write_ids: list[str]
    merged: dict[int, str] = field(default_factory=dict)
    rewrite: set[str] = field(default_factory=set)


def plan_dedupe(
    mode: str | None,
    ids: Sequence[str],
    texts: Sequence[str],
    vectors: np.ndarray,
    exact_twins: Callable[[list[int]], dict[int, list[Twin]]],
    near_twins: Callable[[np.ndarray], list[list[tuple[float, Twin]]]],
) -> DedupePlan:
    """Group the inputs of one write with each other and with stored twins (module
    docstring). `exact_twins(keys)` gives the stored slots in the write's scope per dedupe
    key; `near_twins(vectors)` the stored slots nearest each vector, (cosine, twin) best first."""
    n = len(texts)
    if mode is None:
        return DedupePlan(list(ids), list(range(n)), list(ids))
    norms = [normalise_text(t) for t in texts]
    leaders: list[int] = []  # the first input of each group, in order
    group_of = [0] * n
    for i in range(n):
        for g, j in enumerate(leaders):
            if norms[i] == norms[j] or (mode == "near" and _near(vectors, texts, i, j)):
                group_of[i] = g
                break
        else:
            group_of[i] = len(leaders)
            leaders.append(i)
    members: list[list[int]] = [[] for _ in leaders]
    for i, g in enumerate(group_of):
        members[g].append(i)
    stored = exact_twins([text_key(texts[j]) for j in leaders])
    last = [m[-1] for m in members]
    nearest = near_twins(vectors[last]) if mode == "near" else [[] for _ in last]
    plan = DedupePlan([""] * n, [], [])
    for g, group in enumerate(members):
        twin = next(
            (
                tid
                for tid, text in stored.get(text_key(texts[leaders[g]]), ())
                if normalise_text(text) == norms[leaders[g]]
            ),
            None,
        )
        if twin is None:
            twin = next(
                (tid for cos, (tid, text) in nearest[g] if _may_merge(texts[last[g]], text, cos)),
                None,
            )
        owner = ids[group[0]] if twin is None else twin
        for i in group:
            plan.ids[i] = owner
            if twin is not None or i != group[0]:
                plan.merged[i] = owner
        plan.write.append(last[g])
        plan.write_ids.append(owner)
        if twin is not None:
            plan.rewrite.add(twin)
    return plan


def _near(vectors: np.ndarray, texts: Sequence[str], i: int, j: int) -> bool:
    cos = float(np.dot(vectors[i], vectors[j]))
    return _may_merge(texts[i], texts[j], cos)


def _may_merge(new_text: str, stored_text: str, cos: float) -> bool:
    return cos >= NEAR_DUPLICATE_COSINE and may_merge(new_text, stored_text)
