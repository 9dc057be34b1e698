"""SQuAD v1.1 files and their scores: read a SQuAD-format JSON file into paragraphs and
questions, and score answers by exact match and token F1 exactly as the official script does.

Every field is validated as it is read; a malformed file raises InvalidInputError naming the
file and the JSON path of the bad field (`data[3].paragraphs[2].qas[0].answers`), because a
silently skipped question changes every figure computed from the file.

The scoring functions restate the official SQuAD v1.1 evaluation script, evaluate-v1.1.py
(https://worksheets.codalab.org/rest/bundles/0xbcd57bee090b421c982906709c8c27e1/contents/blob/,
mirrored as allenai/bi-att-flow squad/evaluate-v1.1.py): lowercase, drop ASCII punctuation,
drop the articles a/an/the, collapse white space; take the max over the gold answers. Its
quirks are kept so figures compare with published ones: F1 is 0 whenever either side
normalises to no tokens, even when exact match is 1.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class Paragraph:
    """One context paragraph: a memory slot with id "<title>/<index in its article>"."""

    id: str
    title: str
    index: int
    text: str


@dataclass(frozen=True)
class Question:
    """One question, its gold answer texts and the id of the paragraph that answers it."""

    id: str
    text: str
    answers: tuple[str, ...]
    paragraph_id: str


@dataclass(frozen=True)
class SquadFile:
    """Everything read from one SQuAD-format file, in file order."""

    path: Path
    sha256: str  # of the file's bytes, recorded with the results
    articles: int
    paragraphs: list[Paragraph]
    questions: list[Question]


def _get(path: Path, where: str, obj: Any, key: str, kind: type) -> Any:
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{path}: {where} must be a JSON object")
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        what = "a non-empty string" if kind is str else f"a JSON {kind.__name__}"
        raise InvalidInputError(f"{path}: {where}.{key} must be {what}, got {value!r:.60}")
    return value


def _question(path: Path, where: str, qa: Any, paragraph_id: str) -> Question:
    answers = _get(path, where, qa, "answers", list)
    if not answers:
        raise InvalidInputError(
            f"{path}: {where}.answers is empty (SQuAD v1.1 questions all have a gold answer)"
        )
    texts = tuple(
        _get(path, f"{where}.answers[{i}]", a, "text", str) for i, a in enumerate(answers)
    )
    return Question(
        _get(path, where, qa, "id", str),
        _get(path, where, qa, "question", str),
        texts,
        paragraph_id,
    )


def read_squad(path: str | Path) -> SquadFile:
    """Read and validate a SQuAD v1.1-format file (`{"data": [{"title", "paragraphs":
    [{"context", "qas": [{"id", "question", "answers": [{"text"}]}]}]}]}`)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: not valid JSON ({exc})") from None
    articles = _get(path, "the top level", doc, "data", list)
    paragraphs: list[Paragraph] = []
    questions: list[Question] = []
    seen: set[str] = set()
    for a, article in enumerate(articles):
        title = _get(path, f"data[{a}]", article, "title", str)
        for p, para in enumerate(_get(path, f"data[{a}]", article, "paragraphs", list)):
            where = f"data[{a}].paragraphs[{p}]"
            paragraph = Paragraph(f"{title}/{p}", title, p, _get(path, where, para, "context", str))
            if paragraph.id in seen:  # two articles with one title
                raise InvalidInputError(
                    f"{path}: {where}: paragraph id {paragraph.id!r} appears twice"
                )
            seen.add(paragraph.id)
            paragraphs.append(paragraph)
            for q, qa in enumerate(_get(path, where, para, "qas", list)):
                questions.append(_question(path, f"{where}.qas[{q}]", qa, paragraph.id))
    if not questions:
        raise InvalidInputError(f"{path}: holds no questions")
    ids = Counter(q.id for q in questions)
    twice = [qid for qid, n in ids.items() if n > 1]
    if twice:
        raise InvalidInputError(f"{path}: question ids appear twice, e.g. {twice[:3]}")
    return SquadFile(path, hashlib.sha256(raw).hexdigest(), len(articles), paragraphs, questions)


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
