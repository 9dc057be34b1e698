"""SQuAD v1.1 files: read a SQuAD-format JSON file into paragraphs and questions.

Every field is validated as it is read; a malformed file raises InvalidInputError naming the
file and the JSON path of the bad field (`data[3].paragraphs[2].qas[0].answers`), because a
silently skipped question changes every figure computed from the file. Answers are scored by
`rag_memory.evaluation.squad`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError


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
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
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
