"""SQuAD v1.1 scores: exact match and token F1 exactly as the official script computes them.

The files themselves are read by `rag_memory.datasets.squad`.

The scoring functions restate the official SQuAD v1.1 evaluation script, evaluate-v1.1.py
(https://worksheets.codalab.org/rest/bundles/0xbcd57bee090b421c982906709c8c27e1/contents/blob/,
mirrored as allenai/bi-att-flow squad/evaluate-v1.1.py): lowercase, drop ASCII punctuation,
drop the articles a/an/the, collapse white space; take the max over the gold answers. Its
quirks are kept so figures compare with published ones: F1 is 0 whenever either side
normalises to no tokens, even when exact match is 1.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, remove punctuation, articles and extra white space (evaluate-v1.1.py)."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(prediction: str, gold: str) -> float:
    pred, truth = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(pred) & Counter(truth)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    norm = normalize_answer(prediction)
    return float(any(norm == normalize_answer(g) for g in golds))


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    """Token-overlap F1 of the normalised texts, the max over the gold answers."""
    return max(_f1(prediction, g) for g in golds)


def answer_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if a normalised gold answer occurs in the normalised prediction as whole words.

    The "match" / accuracy of RAG evaluations of free-form generators (PopQA, Mallen et al.
    2023, https://arxiv.org/abs/2212.10511; Self-RAG): a right answer inside a sentence counts,
    which exact match, made for extractive readers, scores 0."""
    norm = f" {normalize_answer(prediction)} "
    return float(any(gold and f" {gold} " in norm for gold in map(normalize_answer, golds)))
