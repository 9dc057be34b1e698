"""Checks on user input, done before anything is written, so a bad call changes nothing."""

from __future__ import annotations

import json
import math
import os
import reprlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .errors import InvalidInputError, InvalidVectorError, RepeatedIdError

# Rows whose norm is this close to 1 are left as they are, so vectors that are already unit
# length (every embedder output) are stored bit-for-bit as given.
_UNIT_TOLERANCE = 1e-5
# the same bounds on squared norms: a batch of unit rows is accepted without taking roots
_UNIT_LOW, _UNIT_HIGH = (1 - _UNIT_TOLERANCE) ** 2, (1 + _UNIT_TOLERANCE) ** 2
# numpy dtype kinds read as vectors: ints, floats, and objects that convert to float32.
_REAL_KINDS = "iufO"
# SQLite's INTEGER is an int64; a larger int would be bound as an OverflowError, or read back
# from JSON as an inexact REAL.
SQLITE_INT_MIN, SQLITE_INT_MAX = -(2**63), 2**63 - 1
# Containers a metadata value may nest (the top dict is 1): far below what SQLite's JSON
# functions parse (JSON_MAX_DEPTH: 2000 in 3.40, 1000 since 3.45) and Python's json recursion.
MAX_METADATA_DEPTH = 64
# The widest vectors accepted: 4x the widest embedders in use (LLM-based ones reach 16,384),
# and far from overflowing FAISS's int dimensions and byte counts.
MAX_DIM = 65_536


_SHOWN = reprlib.Repr()  # nesting, long strings and long lists cut short


def shown(value: Any) -> str:
    """`value` for an error message: a bounded repr (deep or long values are cut short, and
    no repr can fail, e.g. an int past Python's 4,300-digit str limit)."""
    try:
        return _SHOWN.repr(value)
    except Exception:  # a message must not raise
        return f"<{type(value).__name__} that cannot be shown>"


def string_problem(value: str, allow_nul: bool = False) -> str | None:
    """Why SQLite cannot keep `value` as given, or None: a lone surrogate cannot be encoded
    as UTF-8, and NUL ends a string in SQLite's JSON functions (json_each, json_extract),
    which every id lookup and metadata filter goes through (texts may hold NUL)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate at position {exc.start}"
    nul = -1 if allow_nul else value.find("\x00")
    return f"holds NUL at position {nul}" if nul >= 0 else None


def check_path(path: Any) -> Path:
    """A memory directory given as a non-empty str or os.PathLike the OS can name."""
    name = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"path must be a non-empty str or os.PathLike, got {shown(path)}")
    problem = "holds NUL" if "\x00" in name else None
    try:
        os.fsencode(name)
    except UnicodeEncodeError as exc:
        problem = f"holds a lone surrogate at position {exc.start}"
    if problem:
        raise InvalidInputError(f"path {name!r} {problem}")
    return Path(name)


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be True or False, got {shown(value)}")
    return value


def as_list(value: Any, what: str) -> list[Any]:
    """A single str becomes a one-item list; other sequences become lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise InvalidInputError(
        f"{what} must be a string or a list of strings, got {type(value).__name__}"
    )


def check_texts(texts: Any) -> list[str]:
    texts = as_list(texts, "texts")
    if not texts:
        raise InvalidInputError("texts is empty: nothing to add")
    for n, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"texts[{n}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise InvalidInputError(f"texts[{n}] is empty or only whitespace")
        problem = string_problem(text, allow_nul=True)
        if problem:
            raise InvalidInputError(f"texts[{n}] {problem}")
    return texts


def check_ids(ids: Any, n: int) -> list[str]:
    """Validate user ids (or make uuid4 ones): strings, non-empty, unique within the call."""
    if ids is None:
        return [uuid.uuid4().hex for _ in range(n)]
    ids = as_list(ids, "ids")
    if len(ids) != n:
        raise InvalidInputError(f"got {len(ids)} ids for {n} texts")
    for i, id_ in enumerate(ids):
        if not isinstance(id_, str) or not id_:
            raise InvalidInputError(f"ids[{i}] must be a non-empty string, got {shown(id_)}")
        _check_id_string(id_, i)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dups = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        raise RepeatedIdError(f"ids repeated within one call: {dups[:5]}")
    return ids


def check_lookup_ids(ids: Any) -> list[str]:
    ids = as_list(ids, "ids")
    if not ids:
        raise InvalidInputError("ids is empty")
    for i, id_ in enumerate(ids):
        if not isinstance(id_, str):
            raise InvalidInputError(f"ids[{i}] must be a string, got {shown(id_)}")
        _check_id_string(id_, i)
    return ids


def _check_id_string(id_: str, i: int) -> None:
    problem = string_problem(id_)
    if problem:
        raise InvalidInputError(f"ids[{i}] {id_!r} {problem}")


def encode_metadata(metadata: Any, n: int) -> list[str]:
    """Metadata dicts -> JSON strings (str keys, JSON values, no NaN)."""
    if metadata is None:
        return ["{}"] * n
    if isinstance(metadata, dict):
        metadata = [metadata]
    if not isinstance(metadata, (list, tuple)) or len(metadata) != n:
        raise InvalidInputError(f"metadata must be a list of {n} dicts")
    out = []
    for i, meta in enumerate(metadata):
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise InvalidInputError(f"metadata[{i}] must be a dict, got {shown(meta)}")
        problem = _json_problem(meta, f"metadata[{i}]")
        if problem:
            raise InvalidInputError(problem)
        try:
            out.append(json.dumps(meta, allow_nan=False, ensure_ascii=False))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"metadata[{i}] is not JSON-serialisable: {exc}") from None
    return out


def _json_problem(value: Any, where: str) -> str | None:
    """Why `value` is not a JSON object SQLite keeps faithfully, or None: string keys, values
    str (see `string_problem`), int64, finite float, bool, None, list or dict, nested at most
    MAX_METADATA_DEPTH deep. Walked with a stack, so no depth raises RecursionError."""
    todo = [(value, where, 1)]
    while todo:
        item, path, depth = todo.pop()
        if isinstance(item, (dict, list, tuple)) and depth > MAX_METADATA_DEPTH:
            return f"{path} nests deeper than {MAX_METADATA_DEPTH} levels"
        if isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    return f"{path} has a key that is not a string: {shown(key)}"
                problem = string_problem(key)
                if problem:
                    return f"{path} key {key!r} {problem}"
                todo.append((sub, f"{path}[{shown(key)}]", depth + 1))
        elif isinstance(item, (list, tuple)):
            todo.extend((sub, f"{path}[{n}]", depth + 1) for n, sub in enumerate(item))
        elif isinstance(item, str):
            problem = string_problem(item)
            if problem:
                return f"{path} {problem}"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not SQLITE_INT_MIN <= item <= SQLITE_INT_MAX:
                return f"{path} is outside SQLite's int64 range (a {item.bit_length()}-bit int)"
        elif not isinstance(item, float):
            return f"{path} is not JSON-serialisable: {type(item).__name__}"
        elif not math.isfinite(item):
            return f"{path} is not a finite number: {item}"
    return None


def check_vectors(
    vectors: Any, dim: int, n: int | None = None, what: str = "vectors"
) -> np.ndarray:
    """A (n, dim) float32 C-contiguous array of unit rows, or InvalidVectorError saying why.

    Real numbers only: complex values would lose their imaginary part and strings be parsed."""
    arr = vectors
    if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32:  # else as it is
        try:
            given = np.asarray(vectors)
            if given.dtype.kind not in _REAL_KINDS:
                raise TypeError(f"its values are {given.dtype}, not real numbers")
            with np.errstate(over="ignore"):  # beyond float32's range: inf, reported below
                arr = given.astype(np.float32, copy=False)
        except (TypeError, ValueError) as exc:
            raise InvalidVectorError(f"{what} cannot be read as float32: {exc}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidVectorError(f"{what} must have shape (n, {dim}), got {np.shape(vectors)}")
    if n is not None and arr.shape[0] != n:
        raise InvalidVectorError(f"got {arr.shape[0]} {what} for {n} texts")
    if arr.shape[0] == 0:
        raise InvalidVectorError(f"{what} is empty")
    if arr.shape[0] == 1:  # one query, the common case: one dot product, scalar compares
        square = float(np.dot(arr[0], arr[0]))
        if _UNIT_LOW <= square <= _UNIT_HIGH:  # NaN compares False: reported below
            return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
    # one pass: a NaN or inf anywhere in a row makes its norm NaN or inf
    squares = np.einsum("ij,ij->i", arr, arr)
    if ((squares >= _UNIT_LOW) & (squares <= _UNIT_HIGH)).all():  # NaN compares False
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # unit rows
    norms = np.sqrt(squares)
    finite = np.isfinite(norms)
    if not finite.all():
        row = int(np.argmin(finite))
        problem = (
            "holds NaN or inf (as float32)"
            if not np.isfinite(arr[row]).all()
            else "has values too large to normalise in float32"
        )
        raise InvalidVectorError(f"{what}[{row}] {problem}")
    if (norms == 0).any():
        raise InvalidVectorError(f"{what}[{int(np.argmin(norms))}] is all zeros")
    off_unit = np.abs(norms - 1.0) > _UNIT_TOLERANCE
    if off_unit.any():
        arr = arr.copy()
        arr[off_unit] /= norms[off_unit, None]
    return np.ascontiguousarray(arr)


def is_int(value: Any) -> bool:
    """An int (Python or numpy) and not a bool: `True` is an int to Python, never to us."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float (Python or numpy), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_int(
    value: Any,
    name: str,
    minimum: int = 1,
    error: type[Exception] = InvalidInputError,
    maximum: int | None = None,
) -> int:
    """`value` as an int >= `minimum` (and <= `maximum`), or `error` naming the argument."""
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum:,}]"
        raise error(f"{name} must be an int {bounds}, got {shown(value)}")
    return int(value)


def check_recall_target(value: Any, name: str = "recall_target") -> float:
    """A recall target in (0, 1], or InvalidInputError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise InvalidInputError(f"{name} must be a number in (0, 1], got {shown(value)}")
    return float(value)


def check_k(k: Any, name: str = "k") -> int:
    """A positive int (k, nprobe, ...), or InvalidInputError naming the argument."""
    if not is_int(k) or k <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {shown(k)}")
    return int(k)


def is_text_batch(query: Any) -> bool:
    return (
        isinstance(query, Sequence)
        and not isinstance(query, str)
        and bool(query)
        and all(isinstance(q, str) for q in query)
    )


Config = TypeVar("Config")
FieldTypes = Mapping[str, "type | tuple[type, ...]"]


def config_from_dict(cls: type[Config], values: dict[str, Any]) -> Config:
    """Build a frozen config dataclass from a dict; an unknown key is an error, not ignored."""
    if not isinstance(values, dict) or not all(isinstance(key, str) for key in values):
        raise InvalidInputError(
            f"{cls.__name__} needs a dict of field names to values, got {shown(values)}"
        )
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInputError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    return cls(**values)


def json_object_problem(obj: Any, types: FieldTypes, what: str) -> str | None:
    """Why a parsed JSON object does not have exactly the keys of `types`, each of its type
    (an int is never a bool), or None when it does. The one strict check behind every file
    and record rag_memory reads back (manifest, checkpoint, index plan): callers turn the
    problem into the error that names their file."""
    if not isinstance(obj, dict):
        return f"{what} must be a JSON object, got {type(obj).__name__}"
    if set(obj) != set(types):
        missing, extra = sorted(set(types) - set(obj)), sorted(set(obj) - set(types))
        return f"{what} has missing keys {missing} / unknown keys {extra}"
    for key, typ in types.items():
        value = obj[key]
        wanted = typ if isinstance(typ, tuple) else (typ,)
        if not isinstance(value, wanted) or (bool not in wanted and isinstance(value, bool)):
            name = " or ".join(t.__name__ for t in wanted)
            return f"{what} key {key!r} must be {name}, got {shown(value)}"
    return None
