"""Compile a Chroma-style `where` filter into a SQL predicate over the slots' metadata JSON.

Grammar (the operators Chroma users know):
    {"field": value}                        equality
    {"field": {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}
    {"field": {"$in"|"$nin": [value, ...]}}
    {"$and": [where, ...]}  {"$or": [where, ...]}
Several keys in one object are AND-ed. Values are str, int, float or bool. The result is
(sql, params) with every value bound as a parameter, never spliced into the SQL text.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..errors import InvalidFilterError

_COMPARISONS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_ORDERED = {"$gt", "$gte", "$lt", "$lte"}
_LOGICAL = {"$and": " AND ", "$or": " OR "}


def _json_path(field: str) -> str:
    # Quote the key so dots and spaces in user keys are not read as JSON path syntax.
    return "$." + json.dumps(field)


def _check_value(field: str, op: str, value: Any) -> None:
    if isinstance(value, bool) or isinstance(value, (str, int)):
        if op in _ORDERED and isinstance(value, bool):
            raise InvalidFilterError(f"where: {field!r} {op} needs a number or string, not a bool")
        return
    if isinstance(value, float) and math.isfinite(value):
        return
    raise InvalidFilterError(
        f"where: value for {field!r} {op} must be str, int, float or bool, got {value!r}"
    )


def _compare(field: str, op: str, value: Any) -> tuple[str, list[Any]]:
    _check_value(field, op, value)
    path = _json_path(field)
    if isinstance(value, bool):
        # SQLite's json_extract gives 1/0 for true/false; json_type keeps them apart from numbers.
        sql, params = "json_type(metadata, ?) = ?", [path, "true" if value else "false"]
    else:
        # Typed comparison: 1 must not match true, nor "1" match 1.
        types = "('text')" if isinstance(value, str) else "('integer', 'real')"
        cmp = "=" if op == "$ne" else _COMPARISONS[op]
        sql = f"(json_type(metadata, ?) IN {types} AND json_extract(metadata, ?) {cmp} ?)"
        params = [path, path, value]
    if op == "$ne":
        # A slot without the field is "not equal" too (Chroma's behaviour).
        return f"NOT coalesce({sql}, 0)", params
    return sql, params


def _membership(field: str, op: str, values: Any) -> tuple[str, list[Any]]:
    if not isinstance(values, list) or not values:
        raise InvalidFilterError(
            f"where: {op} for {field!r} needs a non-empty list, got {values!r}"
        )
    parts, params = [], []
    for value in values:
        sql, p = _compare(field, "$eq", value)
        parts.append(sql)
        params.extend(p)
    sql = "(" + " OR ".join(parts) + ")"
    return (sql, params) if op == "$in" else (f"NOT coalesce({sql}, 0)", params)


def _field(field: str, condition: Any) -> tuple[str, list[Any]]:
    if field.startswith("$"):
        raise InvalidFilterError(f"where: unknown operator {field!r} (use $and / $or)")
    if not isinstance(condition, dict):
        return _compare(field, "$eq", condition)
    if len(condition) != 1:
        raise InvalidFilterError(
            f"where: {field!r} needs exactly one operator, got {sorted(condition)}"
        )
    ((op, value),) = condition.items()
    if op in _COMPARISONS:
        return _compare(field, op, value)
    if op in ("$in", "$nin"):
        return _membership(field, op, value)
    raise InvalidFilterError(f"where: unknown operator {op!r} for field {field!r}")


def compile_where(where: Any) -> tuple[str, list[Any]]:
    """Return (sql, params) for a `where` filter, or raise InvalidFilterError naming the fault."""
    if not isinstance(where, dict) or not where:
        raise InvalidFilterError(f"where must be a non-empty dict, got {where!r}")
    parts, params = [], []
    for key, value in where.items():
        if not isinstance(key, str):
            raise InvalidFilterError(f"where: keys must be strings, got {key!r}")
        if key in _LOGICAL:
            if not isinstance(value, list) or not value:
                raise InvalidFilterError(f"where: {key} needs a non-empty list of filters")
            subs = [compile_where(sub) for sub in value]
            parts.append("(" + _LOGICAL[key].join(s for s, _ in subs) + ")")
            for _, p in subs:
                params.extend(p)
        else:
            sql, p = _field(key, value)
            parts.append(sql)
            params.extend(p)
    return "(" + " AND ".join(parts) + ")", params
