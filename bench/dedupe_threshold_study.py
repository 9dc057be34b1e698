"""When may dedupe="near" merge? Merge precision / recall of the cosine threshold and the guard.

Stored: every SciFact train claim (plus the originals of the hand-written pairs). Written
again, each against the CANDIDATES stored claims nearest it (what `Memory.add(...,
dedupe="near")` compares), on the probes of bench/cache_threshold_study.py (bench/_probes.py):
  paraphrases (merging into their own claim is right): casing, punctuation, word order, synonym;
  hard negatives (any merge is wrong): negation, antonym, swapped entities, hand-written pairs;
  natural negatives (any merge is wrong): every train claim written again into a memory of the
      others (leave-one-out; SciFact holds many claims with their negation), and every SciFact
      claim outside the train split.
A text merges into the first candidate, best first, whose cosine is >= the threshold and that
the guard allows. Precision = right merges / all merges; recall = right merges / paraphrases.
A negative whose text is a stored claim up to case and spacing is an exact twin, neither right
nor wrong (as in the cache study).

Guards: cosine alone; `near_duplicates.may_merge`; and the candidate cues it was chosen over
(de Marneffe et al. 2008, "Finding contradictions in text"): refuse a pair whose negation cues,
numbers or words of an antonym pair (the probes' own list, so the antonym probes are in-sample)
differ, or whose shared words change order beyond a rotation, optionally allowing at most k
other changed words.

    python bench/dedupe_threshold_study.py [--out results/dedupe] [--scifact DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _data import HARD_NEGATIVE_PAIRS, SCIFACT
from _probes import ANTONYMS, build_probes, fold, other_claims, train_claims

from rag_memory.dedupe import NEAR_CANDIDATES as CANDIDATES
from rag_memory.embed import Embedder
from rag_memory.near_duplicates import may_merge, words

THRESHOLDS = (
    [round(0.80 + 0.02 * i, 2) for i in range(5)]
    + [round(0.90 + 0.01 * i, 2) for i in range(10)]
    + [round(0.991 + 0.001 * i, 3) for i in range(9)]
    + [1.0]
)
PARAPHRASES = ("casing", "punctuation", "word order", "synonym")
NEGATIVES = ("negation", "antonym", "swapped entities", "hand-written", "other claims")
NEGATION_CUES = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "nowhere", "neither", "nor", "without"}
)
CUES = ("negation", "numbers", "antonym", "order")

# One text written again: (kind, text, index of the stored claim it paraphrases or -1,
# the CANDIDATES nearest stored claims best first, and their cosines).
Item = tuple[str, str, int, np.ndarray, np.ndarray]


def nearest(vectors: np.ndarray, stored: np.ndarray, exclude: np.ndarray | None) -> tuple:
    """The CANDIDATES stored rows nearest each vector (ties in stored order), and their cosines."""
    scores = vectors @ stored.T
    if exclude is not None:
        scores[exclude] = -2.0
    top = np.argsort(-scores, axis=1, kind="stable")[:, :CANDIDATES]
    return top, np.take_along_axis(scores, top, axis=1)


def build_items(embedder: Embedder, train: list[str], others: list[str]) -> list[Item]:
    """Every text written again, with its candidates: the probes, then the natural negatives."""
    stored = train + [q for q, _ in HARD_NEGATIVE_PAIRS]
    probes = build_probes(train, HARD_NEGATIVE_PAIRS)
    vectors = embedder.encode(stored + [p[1] for p in probes] + others)
    stored_vecs, probe_vecs = vectors[: len(stored)], vectors[len(stored) :]
    top, cos = nearest(probe_vecs[: len(probes)], stored_vecs, None)
    items = [(k, t, s, top[i], cos[i]) for i, (k, t, s) in enumerate(probes)]
    # a train claim against the others: its own text (and any duplicate of it) is no candidate
    folded = [fold(t) for t in stored]
    same = np.array([[a == b for b in folded] for a in folded[: len(train)]])
    top, cos = nearest(stored_vecs[: len(train)], stored_vecs, same)
    items += [("other claims", t, -1, top[i], cos[i]) for i, t in enumerate(train)]
    if others:
        top, cos = nearest(probe_vecs[len(probes) :], stored_vecs, None)
        items += [("other claims", t, -1, top[i], cos[i]) for i, t in enumerate(others)]
    return items


def lcs_length(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Longest common subsequence of two word sequences, bit-parallel (Crochemore et al. 2001,
    "A fast and practical bit-vector algorithm for the longest common subsequence problem")."""
    masks: dict[str, int] = {}
    for i, w in enumerate(b):
        masks[w] = masks.get(w, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for w in a:
        u = v & masks.get(w, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - bin(v).count("1")


@functools.cache
def cues(new_text: str, stored_text: str) -> tuple[frozenset[str], int]:
    """The candidate cues that tell the pair apart, and how many words changed (multiset)."""
    a, b = words(new_text), words(stored_text)
    bag_a, bag_b = Counter(a), Counter(b)
    added, removed = bag_a - bag_b, bag_b - bag_a
    fired = set()
    if Counter(w for w in a if w in NEGATION_CUES) != Counter(w for w in b if w in NEGATION_CUES):
        fired.add("negation")
    if Counter(w for w in a if any(c.isdigit() for c in w)) != Counter(
        w for w in b if any(c.isdigit() for c in w)
    ):
        fired.add("numbers")
    if any(ANTONYMS.get(x) == y or ANTONYMS.get(y) == x for x in added for y in removed):
        fired.add("antonym")
    shared = sum((bag_a & bag_b).values())
    first = next((w for w in a if w in bag_b), None)
    starts = [0] + [k for k, w in enumerate(b) if k and w == first]
    if all(lcs_length(a, b[k:] + b[:k]) < shared for k in starts):
        fired.add("order")
    return frozenset(fired), sum((added + removed).values())


def cue_guard(used: tuple[str, ...], max_changed: int | None) -> Callable[[str, str], bool]:
    def guard(new_text: str, stored_text: str) -> bool:
        fired, changed = cues(new_text, stored_text)
        return not fired & set(used) and (max_changed is None or changed <= max_changed)

    return guard


def allowed(items: list[Item], stored: list[str], guard: Callable[[str, str], bool] | None):
    """Whether the guard lets each item merge into each of its candidates."""
    return np.array(
        [[guard is None or guard(text, stored[c]) for c in top] for _, text, _, top, _ in items]
    )


def sweep(items: list[Item], stored: list[str], ok: np.ndarray) -> list[dict]:
    """Precision, recall and merges by kind for each threshold."""
    rows = []
    for t in THRESHOLDS:
        merged: Counter[str] = Counter()  # right merges of paraphrases, wrong ones of negatives
        total: Counter[str] = Counter()
        for (kind, text, src, top, cos), allow in zip(items, ok, strict=True):
            total[kind] += 1
            into = next((c for c, s, a in zip(top, cos, allow, strict=True) if s >= t and a), None)
            if into is None:
                continue
            if src >= 0:
                merged[kind if stored[into] == stored[src] else "paraphrase -> other claim"] += 1
            elif fold(text) != fold(stored[into]):
                merged[kind] += 1
        right = sum(merged[k] for k in PARAPHRASES)
        wrong = sum(merged.values()) - right
        n_paraphrases = sum(total[k] for k in PARAPHRASES)
        rows.append(
            {
                "threshold": t,
                "precision": right / (right + wrong) if right + wrong else 1.0,
                "recall": right / n_paraphrases if n_paraphrases else 0.0,
                "recall_by_kind": {k: merged[k] / total[k] for k in PARAPHRASES if total[k]},
                "wrong": {k: merged[k] for k in (*NEGATIVES, "paraphrase -> other claim")},
            }
        )
    return rows


def loosest_safe(rows: list[dict]) -> dict:
    """The row of the lowest threshold from which up every row has precision 1.0."""
    safe = rows[-1]
    for row in reversed(rows):
        if row["precision"] < 1.0:
            break
        safe = row
    return safe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write results.json here")
    parser.add_argument("--scifact", type=Path, default=SCIFACT, help="the SciFact folder")
    args = parser.parse_args()
    try:
        train = train_claims(args.scifact)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    stored = train + [q for q, _ in HARD_NEGATIVE_PAIRS]
    items = build_items(Embedder(), train, other_claims(train, args.scifact))
    guards: dict[str, Callable[[str, str], bool] | None] = {
        "cosine alone": None,
        "cosine + may_merge": may_merge,
        "cues, any other change": cue_guard(CUES, None),
        **{f"cues, <= {k} changed words": cue_guard(CUES, k) for k in (4, 2, 1)},
        **{f"cues without {c}": cue_guard(tuple(x for x in CUES if x != c), None) for c in CUES},
    }
    results = {name: sweep(items, stored, allowed(items, stored, g)) for name, g in guards.items()}
    chosen = loosest_safe(results["cosine + may_merge"])
    counts = Counter(kind for kind, *_ in items)
    passing = {
        k: sum(1 for kind, _, _, _, cos in items if kind == k and cos[0] >= chosen["threshold"])
        for k in NEGATIVES
    }
    print(render(results, counts, chosen, passing))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(
            json.dumps(
                {
                    "candidates": CANDIDATES,
                    "texts": counts,
                    "chosen": chosen["threshold"],
                    "negatives passing the chosen threshold": passing,
                    "sweeps": results,
                },
                indent=1,
            ),
            encoding="utf-8",
        )
    return 0


def render(
    results: dict[str, list[dict]], counts: Counter[str], chosen: dict, passing: dict[str, int]
) -> str:
    head = (
        "| threshold | precision | recall | "
        + " | ".join(f"recall {k}" for k in PARAPHRASES)
        + " | "
        + " | ".join(f"wrong: {k}" for k in (*NEGATIVES, "paraphrase -> other claim"))
        + " |"
    )
    lines = [f"texts written again: {dict(counts)}; candidates per text: {CANDIDATES}"]
    for name in ("cosine alone", "cosine + may_merge"):
        lines += ["", f"## {name}", "", head, "|" + "---|" * (3 + len(PARAPHRASES) + 6)]
        for r in results[name]:
            lines.append(
                f"| {r['threshold']:.3f} | {r['precision']:.4f} | {r['recall']:.3f} | "
                + " | ".join(f"{r['recall_by_kind'][k]:.3f}" for k in PARAPHRASES)
                + " | "
                + " | ".join(str(v) for v in r["wrong"].values())
                + " |"
            )
    lines += [
        "",
        "## guards: loosest threshold with precision 1.0, and wrong merges at 0.90 / 0.99",
        "",
        "| guard | loosest safe threshold | recall there | synonym | word order "
        "| wrong at 0.90 | wrong at 0.99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        safe = loosest_safe(rows)
        at = {r["threshold"]: sum(r["wrong"].values()) for r in rows}
        lines.append(
            f"| {name} | {safe['threshold']} | {safe['recall']:.3f} | "
            f"{safe['recall_by_kind']['synonym']:.3f} | "
            f"{safe['recall_by_kind']['word order']:.3f} | {at[0.9]} | {at[0.99]} |"
        )
    lines += [
        "",
        f"chosen NEAR_DUPLICATE_COSINE: {chosen['threshold']} (loosest threshold at which "
        f"cosine + may_merge merges no negative), recall {chosen['recall']:.3f}",
        f"negatives whose nearest stored claim passes {chosen['threshold']} (kept apart by "
        f"may_merge, not by the threshold): {passing}",
    ]
    if chosen["recall"] < 0.1:
        lines.append("recall at the chosen threshold is near zero: near dedupe merges ~nothing")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
