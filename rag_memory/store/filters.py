"""Compile a Chroma-style `where` filter into a SQL predicate over the slots' metadata JSON.

Grammar (the operators Chroma users know):
    {"field": value}                        equality
    {"field": {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}
    {"field": {"$in"|"$nin": [value, ...]}}
    {"$and": [where, ...]}  {"$or": [where, ...]}
    {"$written_at": {"$gte": t}}  the slot's write time (a column, not metadata; numbers only)
    {"$expires_at": ...}          its expiry time (a slot that never expires has none)
Several keys in one object are AND-ed. Values are str, int (SQLite's int64), float or bool.
The result is (sql, params) with every key and value bound as a parameter, never spliced
into the SQL text.

How a field is read. SQLite 3.40's JSON path takes a quoted label (`$."a.b"`) as the raw text
between the quotes and compares it with the key's text *as stored*, escapes included; the
label ends at the first `"`, whatever precedes it. So a key holding `"` cannot be named by a
path at all, a key holding `\\` or a control character only through its escaped form, and an
ASCII-escaped label (`json.dumps` by default) never matches a key stored as UTF-8. Keys free
of `"`, `\\` and control characters are stored as themselves (`json.dumps(ensure_ascii=False)`
escapes nothing else) and are read by path; every other key is matched by value, on
`json_each(metadata)`'s `key` column, which SQLite unescapes, in every version.

Size. SQLite parses `a OR b OR ...` into a tree as deep as the list is long and refuses
trees deeper than 1000 (SQLITE_MAX_EXPR_DEPTH); its parser's stack holds 100 nested
parentheses or pending operators (YYSTACKDEPTH). Lists are therefore joined in groups of
`_FAN_OUT` per parenthesis (a tree of few levels and short chains), `$in`/`$nin` bind their
whole list as one JSON parameter, and filters nest at most `MAX_FILTER_DEPTH` objects deep.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..errors import InvalidFilterError
from ..validation import SQLITE_INT_MAX, SQLITE_INT_MIN, shown, string_problem

_COMPARISONS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_ORDERED = {"$gt", "$gte", "$lt", "$lte"}
_LOGICAL = {"$and": " AND ", "$or": " OR "}
# Fields that name a column of the slot table rather than a metadata key.
SLOT_COLUMNS = {"$written_at": "written_at", "$expires_at": "expires_at"}

# Objects a filter may nest ({"$and": [{...}]} is two deep). Compiled most-nested-first, the
# heaviest filters found fail SQLite 3.40's parser stack from 32 levels on (several keys per
# object, json_each leaves, the widest lists the parameter limit allows); these pass at this
# depth in tests/store/test_filters.py, which leaves a margin of 12 levels.
MAX_FILTER_DEPTH = 20
# SQLite's default SQLITE_MAX_VARIABLE_NUMBER since 3.32: parameters one statement may bind.
MAX_FILTER_PARAMS = 32_766
# Clauses chained flat within one pair of parentheses: 32 ** 3 covers MAX_FILTER_PARAMS in
# three levels of parentheses, each a chain of at most 32 (expression depth 32 per level).
_FAN_OUT = 32

# Keys stored as themselves, so a quoted path label names them (see the module docstring).
_PATH_KEY = re.compile(r'[^"\\\x00-\x1f]*')
# `{type}` / `{value}`: the field's JSON type and value in a check; `?`: one of its parameters.
_SLOT = re.compile(r"\{type\}|\{value\}|\?")
_TYPES = {"str": "('text')", "num": "('integer', 'real')"}
# What SQLite says when a statement passes one of its limits, which a build may set lower
# than the defaults this module keeps within.
_SQLITE_LIMITS = (
    "too many SQL variables",
    "Expression tree is too large",
    "parser stack overflow",
    "string or blob too big",
)


class Clause(NamedTuple):
    """Compiled SQL, its parameters in order, and how many logical joins it nests."""

    sql: str
    params: list[Any]
    depth: int = 0


def _on_field(field: str, check: str, params: Sequence[Any]) -> Clause:
    """SQL true when the slot's metadata has `field` and `check` holds for it, false or NULL
    otherwise. `check` reads the field's JSON type as `{type}` and its value as `{value}`
    and binds `params` at its `?`s, in order."""
    if _PATH_KEY.fullmatch(field):
        path = '$."' + field + '"'
        reads = {"{type}": "json_type(metadata, ?)", "{value}": "json_extract(metadata, ?)"}
        own = iter(params)
        bound: list[Any] = []

        def fill(slot: re.Match[str]) -> str:
            bound.append(next(own) if slot.group() == "?" else path)
            return reads.get(slot.group(), "?")

        return Clause(_SLOT.sub(fill, check), bound)
    # json_each's columns are key, value, type, ...; `metadata` is the outer row's.
    check = check.replace("{type}", "type").replace("{value}", "value")
    return Clause(
        f"EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = ? AND {check})", [field, *params]
    )


def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else "str" if isinstance(value, str) else "num"


def _check_value(field: str, op: str, value: Any) -> None:
    if isinstance(value, str):
        problem = string_problem(value)
        if problem:
            raise InvalidFilterError(f"where: value for {field!r} {op} {problem}")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not SQLITE_INT_MIN <= value <= SQLITE_INT_MAX:
            raise InvalidFilterError(
                f"where: value for {field!r} {op} is outside SQLite's int64 range "
                f"(a {value.bit_length()}-bit int)"
            )
    elif not isinstance(value, bool) and not (isinstance(value, float) and math.isfinite(value)):
        raise InvalidFilterError(
            f"where: value for {field!r} {op} must be str, int, float or bool, got {shown(value)}"
        )
    if op in _ORDERED and isinstance(value, bool):
        raise InvalidFilterError(f"where: {field!r} {op} needs a number or string, not a bool")


def _negate(clause: Clause) -> Clause:
    """A slot without the field is "not equal" too (Chroma's behaviour)."""
    return Clause(f"NOT coalesce({clause.sql}, 0)", clause.params, clause.depth)


def _compare(field: str, op: str, value: Any) -> Clause:
    _check_value(field, op, value)
    if isinstance(value, bool):
        # SQLite's json_extract gives 1/0 for true/false; the JSON type keeps them apart.
        clause = _on_field(field, "{type} = ?", ["true" if value else "false"])
    else:
        # Typed comparison: 1 must not match true, nor "1" match 1.
        cmp = "=" if op == "$ne" else _COMPARISONS[op]
        clause = _on_field(
            field, f"{{type}} IN {_TYPES[_kind(value)]} AND {{value}} {cmp} ?", [value]
        )
    return _negate(clause) if op == "$ne" else clause


def _membership(field: str, op: str, values: Any) -> Clause:
    """One clause per kind of value, each binding its whole list as one JSON array."""
    if not isinstance(values, list) or not values:
        raise InvalidFilterError(
            f"where: {op} for {field!r} needs a non-empty list, got {shown(values)}"
        )
    by_kind: dict[str, list[Any]] = {}
    for value in values:
        _check_value(field, op, value)
        by_kind.setdefault(_kind(value), []).append(value)
    clauses = []
    for kind, group in by_kind.items():
        if kind == "bool":
            check = "{type} IN (SELECT value FROM json_each(?))"
            group = ["true" if v else "false" for v in group]
        else:
            check = f"{{type}} IN {_TYPES[kind]} AND {{value}} IN (SELECT value FROM json_each(?))"
        clauses.append(_on_field(field, check, [json.dumps(group)]))
    clause = _join(clauses, " OR ")
    return clause if op == "$in" else _negate(clause)


def _on_column(field: str, condition: Any) -> Clause:
    """A condition on one of the slot table's own columns (`SLOT_COLUMNS`): numbers only, the
    comparison and membership operators; a slot without the value matches only $ne / $nin."""
    column = SLOT_COLUMNS[field]
    op, value = ("$eq", condition) if not isinstance(condition, dict) else (None, None)
    if op is None:
        if len(condition) != 1:
            raise InvalidFilterError(
                f"where: {field!r} needs exactly one operator, got {shown(list(condition))}"
            )
        ((op, value),) = condition.items()
    values = value if op in ("$in", "$nin") else [value]
    if op not in _COMPARISONS and op not in ("$in", "$nin"):
        raise InvalidFilterError(f"where: unknown operator {op!r} for field {field!r}")
    if not isinstance(values, list) or not values:
        raise InvalidFilterError(f"where: {op} for {field!r} needs a non-empty list")
    for v in values:
        _check_value(field, op, v)
        if isinstance(v, (bool, str)):
            raise InvalidFilterError(f"where: {field!r} is a time: compare it with numbers")
    if op in ("$in", "$nin"):
        clause = Clause(f"{column} IN (SELECT value FROM json_each(?))", [json.dumps(values)])
        return clause if op == "$in" else _negate(clause)
    cmp = "=" if op == "$ne" else _COMPARISONS[op]
    clause = Clause(f"{column} {cmp} ?", [value])
    return _negate(clause) if op == "$ne" else clause


def _field(field: str, condition: Any) -> Clause:
    if field in SLOT_COLUMNS:
        return _on_column(field, condition)
    if field.startswith("$"):
        raise InvalidFilterError(
            f"where: unknown operator {field!r} (use $and / $or, or one of {sorted(SLOT_COLUMNS)})"
        )
    problem = string_problem(field)
    if problem:
        raise InvalidFilterError(f"where: key {field!r} {problem}")
    if not isinstance(condition, dict):
        return _compare(field, "$eq", condition)
    if len(condition) != 1:
        raise InvalidFilterError(
            f"where: {field!r} needs exactly one operator, got {shown(list(condition))}"
        )
    ((op, value),) = condition.items()
    if op in _COMPARISONS:
        return _compare(field, op, value)
    if op in ("$in", "$nin"):
        return _membership(field, op, value)
    raise InvalidFilterError(f"where: unknown operator {op!r} for field {field!r}")


def _join(clauses: list[Clause], op: str) -> Clause:
    """`clauses` joined by `op` as a tree of flat chains of `_FAN_OUT` (see the docstring),
    the most nested clause first: SQLite's parser holds the operands and operators before a
    clause while it parses it, so one that comes first costs the least stack (AND and OR
    commute; nothing a filter reads has side effects)."""
    clauses = sorted(clauses, key=lambda clause: -clause.depth)
    while len(clauses) > 1:
        clauses = [
            Clause(
                "(" + op.join(clause.sql for clause in group) + ")",
                [p for clause in group for p in clause.params],
                group[0].depth + 1,
            )
            if len(group) > 1
            else group[0]
            for group in (clauses[i : i + _FAN_OUT] for i in range(0, len(clauses), _FAN_OUT))
        ]
    return clauses[0]


def _where(where: Any, depth: int) -> Clause:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidFilterError(f"where nests deeper than {MAX_FILTER_DEPTH} objects")
    if not isinstance(where, dict) or not where:
        raise InvalidFilterError(f"where must be a non-empty dict, got {shown(where)}")
    clauses = []
    for key, value in where.items():
        if not isinstance(key, str):
            raise InvalidFilterError(f"where: keys must be strings, got {shown(key)}")
        if key in _LOGICAL:
            if not isinstance(value, list) or not value:
                raise InvalidFilterError(f"where: {key} needs a non-empty list of filters")
            clauses.append(_join([_where(sub, depth + 1) for sub in value], _LOGICAL[key]))
        else:
            clauses.append(_field(key, value))
    return _join(clauses, " AND ")


def compile_where(where: Any) -> tuple[str, list[Any]]:
    """Return (sql, params) for a `where` filter, or raise InvalidFilterError naming the fault."""
    sql, params, _ = _where(where, depth=1)
    if len(params) > MAX_FILTER_PARAMS:
        raise InvalidFilterError(
            f"where binds {len(params):,} values, more than the {MAX_FILTER_PARAMS:,} SQLite "
            "takes in one statement: put long lists of values in one $in / $nin"
        )
    return sql, params


def limit_error(exc: sqlite3.Error) -> InvalidFilterError | None:
    """The InvalidFilterError for a compiled filter that passed one of SQLite's limits on this
    build (None when `exc` is something else, e.g. a damaged file)."""
    message = str(exc)
    if not any(limit in message for limit in _SQLITE_LIMITS):
        return None
    return InvalidFilterError(
        f"where is too large for this SQLite ({message}): use fewer clauses, less nesting, "
        "or put long lists of values in one $in / $nin"
    )
