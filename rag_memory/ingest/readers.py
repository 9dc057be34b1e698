"""Corpus readers, one per format, that stream RawRecords (never the whole file) with line numbers.

A reader reports syntax problems (a line that is not JSON, bytes that are not UTF-8) as
records with a problem; field checks are the same for every format (see records.py).
Formats: `beir` (a folder with corpus.jsonl), `jsonl`, `csv` (and .tsv), `parquet`, `text`
(one document per non-blank line, id "<file stem>:<line number>").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..datasets.jsonl import scan_jsonl
from ..errors import BuildInputError
from .records import MALFORMED, UNDECODABLE, FieldMap, RawRecord

FORMATS = ("beir", "jsonl", "csv", "parquet", "text")
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
    ".md": "text",
}
BEIR_CORPUS = "corpus.jsonl"


@dataclass(frozen=True)
class Source:
    """A resolved corpus: the file to read, its format, and how progress is counted."""

    path: Path  # the file actually read (corpus.jsonl for a BEIR folder)
    format: str
    total: int  # progress total: bytes of the file, or rows for Parquet
    unit: str  # "B" or "rows"

    @property
    def documents(self) -> int | None:
        """Records the source holds, where its format says so up front (Parquet), else None."""
        return self.total if self.unit == "rows" else None


def resolve_source(source: str | Path, fmt: str | None) -> Source:
    """The file and format for SOURCE; the format is auto-detected where unambiguous."""
    path = Path(source)
    if fmt is not None and fmt not in FORMATS:
        raise BuildInputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if path.is_dir():
        if fmt not in (None, "beir") or not (path / BEIR_CORPUS).is_file():
            raise BuildInputError(
                f"{path} is a folder: only a BEIR folder (holding "
                f"{BEIR_CORPUS}) can be built; point SOURCE at a file otherwise"
            )
        path, fmt = path / BEIR_CORPUS, "beir"
    elif not path.is_file():
        raise BuildInputError(f"{path}: no such file or folder")
    elif fmt is None:
        fmt = _SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise BuildInputError(
                f"cannot tell the format of {path.name} from its suffix; "
                f"pass --format ({', '.join(FORMATS)})"
            )
    if fmt == "parquet":
        from .tabular import parquet_rows

        return Source(path, fmt, parquet_rows(path), "rows")
    return Source(path, fmt, path.stat().st_size, "B")


def read_jsonl(path: Path, fields: FieldMap) -> Iterator[RawRecord]:
    """One JSON object per line; blank lines are not records (see datasets.jsonl)."""
    for line in scan_jsonl(path):
        if line.value is None:
            kind = UNDECODABLE if line.undecodable else MALFORMED
            yield RawRecord(line.number, line.end, None, (kind, line.problem))
        else:
            yield RawRecord(line.number, line.end, line.value)


def read_text(path: Path, fields: FieldMap) -> Iterator[RawRecord]:
    """One document per non-blank line; its id is "<stem>:<line>" so it is stable across runs."""
    position = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            position += len(raw)
            text = raw.decode("utf-8", errors="surrogateescape").strip()
            if text:
                yield RawRecord(line_no, position, {"id": f"{path.stem}:{line_no}", "text": text})


def _text_fields(fields: FieldMap) -> FieldMap:
    return FieldMap(id_field="id", title_field=fields.title_field, text_field="text")


Reader = Callable[[Path, FieldMap], Iterator[RawRecord]]


def open_records(source: Source, fields: FieldMap) -> tuple[Iterator[RawRecord], FieldMap]:
    """The record stream of `source`, and the field map that applies to it."""
    if source.format in ("jsonl", "beir"):
        return read_jsonl(source.path, fields), fields
    if source.format == "text":
        return read_text(source.path, fields), _text_fields(fields)
    from .tabular import read_csv, read_parquet

    readers: dict[str, Reader] = {"csv": read_csv, "parquet": read_parquet}
    return readers[source.format](source.path, fields), fields
