"""JSONL, the one reader: one JSON object per line, UTF-8, blank lines skipped.

Every JSONL file rag_memory reads goes through here (build corpora, BEIR corpus and queries,
the demo corpus, the benchmarks' data). Lines are read as bytes, so a line that is not UTF-8
is reported as such, with its number, instead of failing the whole file at decode time.

`scan_jsonl` reports a bad line and goes on (a build skips bad records and lists their line
numbers); `iter_jsonl` and `read_jsonl` raise InvalidInputError naming the file and the line
(an evaluation must not silently drop a query or a judgement).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError


@dataclass(frozen=True)
class JsonlLine:
    """One non-blank line of a JSONL file: its object, or why it is not one."""

    number: int  # 1-based line number
    end: int  # bytes of the file read up to the end of this line
    value: dict[str, Any] | None  # None: the line is not a JSON object (see problem)
    problem: str = ""  # why value is None, e.g. "not JSON (Expecting value)"
    undecodable: bool = False  # the problem is bytes that are not UTF-8


def scan_jsonl(path: str | Path) -> Iterator[JsonlLine]:
    """Each non-blank line of `path`, in order, bad ones included (value None, with a problem)."""
    position = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            position += len(raw)
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem = f"not UTF-8 at byte {exc.start} of the line"
                yield JsonlLine(number, position, None, problem, undecodable=True)
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield JsonlLine(number, position, None, f"not JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict):
                problem = f"a JSON {type(obj).__name__}, not an object"
                yield JsonlLine(number, position, None, problem)
                continue
            yield JsonlLine(number, position, obj)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; InvalidInputError "FILE:LINE: problem"
    at the first line that is not a UTF-8 JSON object, or when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: file not found")
    for line in scan_jsonl(path):
        if line.value is None:
            raise InvalidInputError(f"{path}:{line.number}: {line.problem}")
        yield line.number, line.value


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every object of `path`, in order (see iter_jsonl for the errors)."""
    return [obj for _, obj in iter_jsonl(path)]
