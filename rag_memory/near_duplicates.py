"""When may dedupe="near" merge a new text into a stored one? The threshold and the guard.

A pair is a near duplicate when the cosine of its embeddings is >= NEAR_DUPLICATE_COSINE *and*
`may_merge` allows it. The cosine alone cannot tell a rewording from a contradiction: sentence
embeddings barely move when a claim is negated, an antonym or another entity is put in, or two
roles are swapped (Ettinger 2020, "What BERT is not", negation and role reversal; Kassner &
Schütze 2020, "Negated and misprimed probes": BERT predicts the same fillers for "Birds can
fly" and "Birds cannot fly"; distributional vectors put antonyms close, Mohammad et al. 2013,
"Computing lexical contrast"). On SciFact train claims, all-MiniLM-L6-v2 puts a claim and its
negation or antonym at cosine up to 0.9998, so no threshold below 1.0 keeps them apart
(bench/cache_threshold_study.py).

The guard: the two texts must have the same words, in the same order or rotated (one end moved
to the front: "In mice, X raises Y." = "X raises Y in mice."). A word is a `\\w+` run (a
number keeps its separators: "2.5" is one word), case folded after Unicode NFKC, with English
"n't" / "cannot" spelt out. A rotation moves a phrase or clause from one end to the other and
keeps every word and the order within both parts, so who does what to whom stays. Anything else
may flip the meaning while the embedding stays put: a word inserted, deleted or replaced ("not",
an antonym, another number or entity), or words exchanged (swapped roles: "A activates B" /
"B activates A").

Why so strict, measured by bench/dedupe_threshold_study.py (SciFact train: 809 claims stored;
written again: 2,171 paraphrases, 735 generated hard negatives, 10 hand-written ones, and every
claim against the others, leave-one-out; each against its 4 nearest stored claims; a merge is
right only for a paraphrase of the claim it merges into). The cues of the contradiction
literature (de Marneffe et al. 2008, "Finding contradictions in text": negation cues, numbers,
antonyms, argument order) each pay, yet together still need cosine 0.999 to merge no negative:
SciFact's claims come in families one word apart, and most such words are on no list
("enables" / "represses", "central" / "peripheral", "vegans" / "vegetarians"). Allowing one
inserted or deleted word beside them still merges "is significantly associated" into "is
associated". Only the rotation rule merges no negative at any threshold, at the price of every
one-word synonym:

| guard | loosest threshold with precision 1.0 | recall there | synonym | word order |
|---|---|---|---|---|
| cosine alone | 1.0 | 0.305 | 0.000 | 0.000 |
| cues, any other change | 0.999 | 0.492 | 0.021 | 0.000 |
| cues, <= 1 changed word | 0.998 | 0.499 | 0.000 | 0.000 |
| `may_merge` (rotation) | 0.80 (lowest measured) | 0.868 | 0.000 | 1.000 |

At 0.80, 350 of the 354 negated claims and all 215 antonyms and 166 swapped ones have their
nearest stored claim above the threshold: the guard, not the threshold, keeps them apart. So
NEAR_DUPLICATE_COSINE is the loosest threshold measured, 0.80, where the guard merges every
case, punctuation and word-order variant of the study (punctuation 1.000, 0.906 at 0.95) and no
negative; the threshold only bounds which stored slots are compared.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidInputError

NEAR_DUPLICATE_COSINE = 0.80

_IRREGULAR = {"can't": "can not", "cannot": "can not", "won't": "will not", "shan't": "shall not"}
_CONTRACTION = re.compile(r"\b(?:can't|cannot|won't|shan't)\b|(?<=\w)n't\b")
_WORD = re.compile(r"\d+(?:[.,]\d+)*|\w+")


def words(text: str) -> tuple[str, ...]:
    """The words `may_merge` compares: NFKC, case folded, contractions spelt out, punctuation
    dropped ("Doesn't" -> ("does", "not"))."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    folded = _CONTRACTION.sub(lambda m: _IRREGULAR.get(m.group(0), " not"), folded)
    return tuple(_WORD.findall(folded))


def _is_rotation(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether `a` is `b` with a run of words from one end moved to the other (or `b` itself)."""
    if len(a) != len(b):
        return False
    if a == b:
        return True
    return any(b[k:] + b[:k] == a for k in range(1, len(b)) if b[k] == a[0])


def may_merge(new_text: str, stored_text: str) -> bool:
    """Whether a new text may merge into a stored one whose cosine already passes
    NEAR_DUPLICATE_COSINE: the same words, in the same or rotated order (module docstring).
    Texts without a word never merge here (only as exact twins)."""
    if not isinstance(new_text, str) or not isinstance(stored_text, str):
        raise InvalidInputError(
            f"may_merge needs two texts, got {type(new_text).__name__} and "
            f"{type(stored_text).__name__}"
        )
    a, b = words(new_text), words(stored_text)
    return bool(a) and _is_rotation(a, b)
