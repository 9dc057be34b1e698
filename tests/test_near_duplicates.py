"""The near-duplicate rule of dedupe="near": rewordings merge, contradictions never do."""

from __future__ import annotations

import random

import numpy as np
import pytest
from _data import HARD_NEGATIVE_PAIRS
from dedupe_threshold_study import cues, lcs_length, loosest_safe, sweep

from rag_memory import InvalidInputError
from rag_memory.embed import Embedder
from rag_memory.near_duplicates import NEAR_DUPLICATE_COSINE, may_merge, words

NEGATION = (
    "Patients with chronic kidney disease who receive early dialysis have lower mortality at "
    "two years than patients whose dialysis is delayed.",
    "Patients with chronic kidney disease who receive early dialysis do not have lower "
    "mortality at two years than patients whose dialysis is delayed.",
)
# Every way two texts may differ that the study found to flip meaning (or could not tell apart
# from one that does): each must be refused whatever the cosine.
REFUSED = {
    "negation": NEGATION,
    "negation, contracted": ("Statins work in children.", "Statins don't work in children."),
    "antonym": (
        "Smoking increases the risk of lung cancer.",
        "Smoking decreases the risk of lung cancer.",
    ),
    "number": (
        "A 5 mg dose lowers blood pressure within 2 hours.",
        "A 50 mg dose lowers blood pressure within 2 hours.",
    ),
    "decimal": ("The dose is 2.5 mg.", "The dose is 25 mg."),
    "swapped entities": ("Macrophages activate T cells.", "T cells activate macrophages."),
    "swapped comparison": (
        "p53 mutations are more common in men than in women.",
        "p53 mutations are more common in women than in men.",
    ),
    "inserted qualifier": (
        "Pioglitazone use is associated with an increased risk of prostate cancer.",
        "Pioglitazone use is significantly associated with an increased risk of prostate cancer.",
    ),
    "other entity": (
        "Microglia are immune cells of the central nervous system.",
        "Microglia are immune cells of the peripheral nervous system.",
    ),
    # the measured price: a one-word synonym is a one-word change like an antonym
    "synonym": (
        "Aspirin reduces the risk of heart attacks.",
        "Aspirin lowers the risk of heart attacks.",
    ),
}
MERGED = {
    "case and punctuation": (
        "Aspirin reduces the risk of heart attacks.",
        "ASPIRIN REDUCES THE RISK OF HEART ATTACKS?!",
    ),
    "phrase moved to the front": (
        "Regular exercise improves sleep quality in older adults.",
        "In older adults, regular exercise improves sleep quality.",
    ),
    "clause moved to the end": (
        "Before the meal, the patient took insulin.",
        "The patient took insulin before the meal.",
    ),
    "contraction spelt out": ("Statins don't work.", "Statins do not work."),
    "cannot": ("Mice cannot clear the virus.", "Mice can't clear the virus."),
    "inner punctuation": ("X-ray imaging (CT) finds it.", "X ray imaging CT finds it."),
    "fullwidth letters (NFKC)": ("Ｃａｆｆｅｉｎｅ helps.", "Caffeine helps."),
}


@pytest.mark.parametrize("kind", MERGED)
def test_rewordings_merge_both_ways(kind: str) -> None:
    a, b = MERGED[kind]
    assert may_merge(a, b) and may_merge(b, a)


@pytest.mark.parametrize("kind", REFUSED)
def test_meaning_changes_are_refused_both_ways(kind: str) -> None:
    a, b = REFUSED[kind]
    assert not may_merge(a, b) and not may_merge(b, a)


def test_hand_written_hard_negatives_are_refused() -> None:
    for claim, other in HARD_NEGATIVE_PAIRS:
        assert not may_merge(other, claim), (claim, other)


def test_words_folds_case_contractions_and_keeps_numbers_whole() -> None:
    assert words("Doesn't it CAN'T? 1,000 and 2.5% of IL-6") == (
        "does",
        "not",
        "it",
        "can",
        "not",
        "1,000",
        "and",
        "2.5",
        "of",
        "il",
        "6",
    )
    assert words("It doesn’t.") == words("it does not")  # typographic apostrophe


def test_texts_without_words_never_merge_near() -> None:
    assert not may_merge("!!!", "???")
    assert not may_merge("...", "...")  # identical ones are exact twins, not near ones


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="two texts"):
        may_merge(None, "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="two texts"):
        may_merge("text", b"text")  # type: ignore[arg-type]


def test_guard_not_threshold_keeps_negations_apart(embedder: Embedder) -> None:
    """Measured (bench/dedupe_threshold_study.py): negations, antonyms and swapped roles sit
    above NEAR_DUPLICATE_COSINE, so the guard is what refuses them; a rotation passes both."""
    pairs = [NEGATION, *HARD_NEGATIVE_PAIRS]
    vectors = embedder.encode([t for pair in pairs for t in pair])
    cosines = np.sum(vectors[0::2] * vectors[1::2], axis=1)
    assert cosines.min() >= NEAR_DUPLICATE_COSINE, cosines
    assert cosines[0] >= 0.95  # a long claim and its negation: the embedding barely moves
    assert not any(may_merge(b, a) for a, b in pairs)
    a, b = MERGED["phrase moved to the front"]
    va, vb = embedder.encode([a, b])
    assert float(va @ vb) >= NEAR_DUPLICATE_COSINE and may_merge(b, a)


def test_lcs_length_matches_dynamic_programming() -> None:
    rng = random.Random(3)

    def dp(a: tuple[str, ...], b: tuple[str, ...]) -> int:
        prev = [0] * (len(b) + 1)
        for x in a:
            cur = [0]
            for j, y in enumerate(b):
                cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
            prev = cur
        return prev[-1]

    for _ in range(500):
        a = tuple(rng.choice("abcd") for _ in range(rng.randint(0, 12)))
        b = tuple(rng.choice("abcd") for _ in range(rng.randint(0, 12)))
        assert lcs_length(a, b) == dp(a, b), (a, b)


def test_study_cues_name_what_differs() -> None:
    assert cues(*REFUSED["negation"]) == (frozenset({"negation"}), 2)  # "do", "not" inserted
    assert cues(*REFUSED["antonym"])[0] == {"antonym"}
    assert cues(*REFUSED["number"])[0] == {"numbers"}
    assert cues(*REFUSED["swapped entities"]) == (frozenset({"order"}), 0)
    assert cues(*MERGED["phrase moved to the front"]) == (frozenset(), 0)
    assert cues(*REFUSED["synonym"]) == (frozenset(), 2)  # what the cue lists cannot see


def test_study_sweep_counts_right_and_wrong_merges() -> None:
    """Two stored claims; a paraphrase of claim 0, its negation, and claim 1 written again."""
    stored = ["a b c", "a b d"]
    top = np.array([0, 1])
    items = [
        ("word order", "c a b", 0, top, np.array([0.95, 0.5])),
        ("negation", "a b not c", -1, top, np.array([0.97, 0.5])),
        ("other claims", "a b d", -1, np.array([0, 1]), np.array([0.85, 0.1])),
    ]
    ok = np.array([[True, True], [False, True], [True, True]])  # the guard refuses the negation
    rows = {r["threshold"]: r for r in sweep(items, stored, ok)}
    assert rows[0.8]["wrong"]["other claims"] == 1 and rows[0.8]["precision"] == 0.5
    assert rows[0.86]["wrong"]["other claims"] == 0 and rows[0.86]["precision"] == 1.0
    assert rows[0.86]["recall_by_kind"]["word order"] == 1.0
    assert rows[0.96]["recall"] == 0.0 and rows[0.96]["wrong"]["negation"] == 0
    assert loosest_safe(list(rows.values()))["threshold"] == 0.86
