"""Corpus records: raw fields from a reader -> a validated Document, or a Problem with its line.

Readers only parse syntax (a JSON line, a CSV row, a Parquet row); mapping fields and
checking values happens here, once, so every format reports bad input the same way.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import BuildInputError
from ..validation import is_int

logger = logging.getLogger(__name__)

# Problem kinds, as reported (the first word of each reason in the build report).
MALFORMED = "malformed"
MISSING_FIELD = "missing field"
EMPTY_TEXT = "empty text"
DUPLICATE_ID = "duplicate id"
UNDECODABLE = "undecodable bytes"
ALREADY_STORED = "id already in the memory"
# Metadata keys the build sets itself on every slot.
RESERVED_KEYS = ("doc_id", "chunk", "title")
# Default id fields, tried in order on each record: BEIR's "_id", then the usual "id".
DEFAULT_ID_FIELDS = ("_id", "id")


@dataclass(frozen=True)
class FieldMap:
    """Which source fields hold the id, title, text and the metadata to keep."""

    id_field: str | None = None  # None: "_id", else "id"
    title_field: str = "title"  # optional in every record
    text_field: str = "text"
    metadata_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        clash = set(self.metadata_fields) & set(RESERVED_KEYS)
        if clash:
            raise BuildInputError(
                f"metadata fields {sorted(clash)} clash with the keys the "
                f"build sets itself ({', '.join(RESERVED_KEYS)})"
            )

    def id_candidates(self) -> tuple[str, ...]:
        return DEFAULT_ID_FIELDS if self.id_field is None else (self.id_field,)


@dataclass(frozen=True)
class RawRecord:
    """One record as a reader saw it: fields, or the reason it could not be parsed."""

    line: int  # 1-based line (text formats) or row (Parquet) where the record starts
    position: int  # progress position after this record (bytes or rows consumed)
    fields: dict[str, Any] | None
    problem: tuple[str, str] | None = None  # (kind, detail) when fields is None


@dataclass(frozen=True)
class Document:
    """A valid source document."""

    id: str
    title: str
    text: str
    metadata: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Problem:
    """A record that was skipped, and why."""

    line: int
    kind: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": f"{self.kind}: {self.detail}"}


@dataclass
class ProblemLog:
    """Counts every skipped record by kind; keeps the first `keep` of them (RAM stays bounded).

    With `strict`, the first problem raises BuildInputError instead.
    """

    strict: bool = False
    keep: int = 1000
    counts: Counter = field(default_factory=Counter)
    examples: list[Problem] = field(default_factory=list)

    def add(self, problem: Problem) -> None:
        if self.strict:
            raise BuildInputError(
                f"line {problem.line}: {problem.kind}: {problem.detail} "
                f"(--strict stops at the first bad record)"
            )
        self.counts[problem.kind] += 1
        if len(self.examples) < self.keep:
            self.examples.append(problem)
        logger.debug("skipped line %d: %s: %s", problem.line, problem.kind, problem.detail)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_reason": dict(sorted(self.counts.items())),
            "examples": [p.to_dict() for p in self.examples],
            "examples_truncated": self.total > len(self.examples),
        }


def _has_surrogates(value: str) -> bool:
    """Readers decode with surrogateescape, so a non-UTF-8 byte shows up as a lone surrogate."""
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _json_value(value: Any) -> Any:
    """A metadata value JSON can hold as is, or its string form (dates, decimals from Parquet)."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return str(value)


def to_document(record: RawRecord, fields_: FieldMap) -> Document | Problem:
    """Map and check one record's fields; a Problem says what is wrong and where."""
    line = record.line
    if record.fields is None:
        kind, detail = record.problem or (MALFORMED, "unreadable record")
        return Problem(line, kind, detail)
    row = record.fields
    id_name = next((f for f in fields_.id_candidates() if row.get(f) is not None), None)
    if id_name is None:
        return Problem(line, MISSING_FIELD, f"no id field ({' or '.join(fields_.id_candidates())})")
    doc_id = row[id_name]
    if is_int(doc_id):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        return Problem(line, MALFORMED, f"id {doc_id!r} is not a non-empty string or integer")
    text = row.get(fields_.text_field)
    if text is None:
        return Problem(line, MISSING_FIELD, f"no text field {fields_.text_field!r} (id {doc_id})")
    title = row.get(fields_.title_field)
    title = "" if title is None else title
    if not isinstance(text, str) or not isinstance(title, str):
        return Problem(line, MALFORMED, f"text and title must be strings (id {doc_id})")
    values = [doc_id, text, title] + [v for v in row.values() if isinstance(v, str)]
    if any(_has_surrogates(v) for v in values):
        return Problem(line, UNDECODABLE, f"a field is not valid UTF-8 (id {doc_id!r})")
    if not text.strip():
        return Problem(line, EMPTY_TEXT, f"text is empty (id {doc_id})")
    metadata = {k: _json_value(row[k]) for k in fields_.metadata_fields if row.get(k) is not None}
    return Document(doc_id, title.strip(), text.strip(), metadata, line)
