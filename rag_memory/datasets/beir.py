"""Read a BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv), as the BEIR / MTEB
leaderboards read it, so retrieval figures computed from it compare with theirs.

Every line is validated as it is read; a malformed file raises InvalidInputError naming the
file and the line, because a silently skipped qrel changes every figure computed from it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInputError
from .jsonl import iter_jsonl

logger = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class BeirSplit:
    """The queries of one split that have relevance judgements, and those judgements."""

    name: str
    queries: dict[str, str]  # query id -> text, only queries that appear in the qrels
    qrels: Qrels  # query id -> {corpus id: relevance grade}


def _field(path: Path, n: int, obj: dict, key: str, required: bool = True) -> str:
    value = obj.get(key, None if required else "")
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (key == "_id" and not value):
        raise InvalidInputError(
            f"{path}:{n}: {key!r} must be a non-empty string"
            if key == "_id"
            else f"{path}:{n}: {key!r} must be a string, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class BeirDocument:
    """One corpus document: its id, its title ("" when absent) and the text to embed."""

    doc_id: str
    title: str  # stripped, so the embedded text starts with it (the lexical view's rule)
    text: str  # title + " " + text, stripped: what BEIR and MTEB embed


def iter_corpus(dataset: Path) -> Iterator[BeirDocument]:
    """Each corpus document; its text is title + " " + text, as BEIR and MTEB embed it, and
    its title is kept apart for the lexical index's title column (store/lexical.py).

    Documents whose title and text are both empty are skipped with a warning: a memory slot
    cannot be empty, and such a document can never be retrieved by any dense retriever either.
    """
    path = Path(dataset) / "corpus.jsonl"
    seen: set[str] = set()
    for n, obj in iter_jsonl(path):
        doc_id = _field(path, n, obj, "_id")
        if doc_id in seen:
            raise InvalidInputError(f"{path}:{n}: document id {doc_id!r} appears twice")
        seen.add(doc_id)
        title = _field(path, n, obj, "title", required=False)
        text = (title + " " + _field(path, n, obj, "text")).strip()
        if not text:
            logger.warning("%s:%d: document %s is empty; skipped", path, n, doc_id)
            continue
        yield BeirDocument(doc_id, title.strip(), text)


def read_qrels(path: Path) -> Qrels:
    """qrels/SPLIT.tsv: a header line, then `query-id <TAB> corpus-id <TAB> integer score`."""
    if not path.is_file():
        raise InvalidInputError(f"{path}: qrels file not found (is the split name right?)")
    qrels: Qrels = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\r\n").split("\t")
            if n == 1 and parts[0] in ("query-id", "query_id", "qid"):
                continue  # BEIR's header line
            if not line.strip():
                continue
            if len(parts) != 3:
                raise InvalidInputError(
                    f"{path}:{n}: expected 3 tab-separated columns, got {len(parts)}"
                )
            try:
                score = int(parts[2])
            except ValueError:
                raise InvalidInputError(
                    f"{path}:{n}: score {parts[2]!r} is not an integer"
                ) from None
            qrels.setdefault(parts[0], {})[parts[1]] = score
    if not qrels:
        raise InvalidInputError(f"{path}: no relevance judgements")
    return qrels


def load_split(dataset: str | Path, split: str) -> BeirSplit:
    """The queries with judgements in `split`, and the judgements (other queries are ignored)."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise InvalidInputError(f"{dataset}: dataset folder not found")
    qrels = read_qrels(dataset / "qrels" / f"{split}.tsv")
    path = dataset / "queries.jsonl"
    queries: dict[str, str] = {}
    for n, obj in iter_jsonl(path):
        qid = _field(path, n, obj, "_id")
        if qid in qrels:
            text = _field(path, n, obj, "text")
            if not text.strip():
                raise InvalidInputError(f"{path}:{n}: query {qid!r} has empty text")
            queries[qid] = text
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise InvalidInputError(
            f"{path}: {len(missing)} queries of split {split!r} have qrels "
            f"but no text, e.g. {missing[:3]}"
        )
    return BeirSplit(split, queries, qrels)
