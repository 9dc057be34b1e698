"""Tabular corpus readers: CSV/TSV (the csv module) and Parquet (pyarrow, streamed by batches).

A column the field map needs but the header lacks fails the build at once with the list of
columns (every row would miss it); a row with a missing or null value is a reported problem.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BuildInputError
from .records import MALFORMED, FieldMap, RawRecord

_PARQUET_BATCH_ROWS = 1024


def _check_columns(path: Path, columns: list[str], fields: FieldMap) -> None:
    ids = [c for c in fields.id_candidates() if c in columns]
    missing = [] if ids else [" or ".join(fields.id_candidates())]
    missing += [c for c in (fields.text_field, *fields.metadata_fields) if c not in columns]
    if missing:
        raise BuildInputError(
            f"{path}: no column {', '.join(missing)}; its columns are "
            f"{columns} (map them with --id-field/--text-field/...)"
        )


class _Lines:
    """Decoded lines for csv.reader, counting physical lines and bytes as they are consumed."""

    def __init__(self, f: Iterator[bytes]) -> None:
        self._f = f
        self.line = 0
        self.position = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = next(self._f)
        self.line += 1
        self.position += len(raw)
        # surrogateescape keeps bad bytes visible to the field check instead of failing the file
        return raw.decode("utf-8", errors="surrogateescape")


def read_csv(path: Path, fields: FieldMap) -> Iterator[RawRecord]:
    """CSV with a header row (TSV when the suffix is .tsv); quoted fields may span lines."""
    # Corpus texts exceed csv's default 128 KiB field limit; raise it (process-wide, never lower).
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, "rb") as f:
        lines = _Lines(f)
        reader = csv.reader(lines, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise BuildInputError(f"{path}: empty file, no header row") from None
        except csv.Error as exc:
            raise BuildInputError(f"{path}: unreadable header row ({exc})") from None
        _check_columns(path, header, fields)
        while True:
            start = lines.line + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield RawRecord(start, lines.position, None, (MALFORMED, f"bad CSV ({exc})"))
                continue
            if not row or all(not cell.strip() for cell in row):
                continue  # blank line
            if len(row) != len(header):
                yield RawRecord(
                    start,
                    lines.position,
                    None,
                    (MALFORMED, f"{len(row)} columns, the header has {len(header)}"),
                )
                continue
            # an empty cell is a missing value, as in most CSV exports
            yield RawRecord(
                start, lines.position, {k: v for k, v in zip(header, row, strict=True) if v != ""}
            )


def parquet_rows(path: Path) -> int:
    """Row count from the Parquet footer (no data read); validates that the file is Parquet."""
    pq = _pyarrow_parquet()
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise BuildInputError(f"{path}: not a readable Parquet file ({exc})") from None


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BuildInputError(
            "reading Parquet needs pyarrow: pip install 'rag_memory[parquet]'"
        ) from None
    return pq


def _decode(value: object) -> object:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="surrogateescape")
    return value


def read_parquet(path: Path, fields: FieldMap) -> Iterator[RawRecord]:
    """Rows in batches of 1,024 (only the needed columns); "line" is the 1-based row number."""
    pq = _pyarrow_parquet()
    pf = pq.ParquetFile(path)
    columns = list(pf.schema_arrow.names)
    _check_columns(path, columns, fields)
    wanted = [
        c
        for c in (
            *fields.id_candidates(),
            fields.title_field,
            fields.text_field,
            *fields.metadata_fields,
        )
        if c in columns
    ]
    row_no = 0
    for batch in pf.iter_batches(
        batch_size=_PARQUET_BATCH_ROWS, columns=list(dict.fromkeys(wanted))
    ):
        for row in batch.to_pylist():
            row_no += 1
            yield RawRecord(row_no, row_no, {k: _decode(v) for k, v in row.items()})
