"""LangChain's dict filters as the memory's `where` filters.

LangChain fixes no filter grammar; its stores take Chroma's and PGVector's operators, which
the memory's grammar (`rag_memory.store.filters`) mostly shares. Translated here:

    {"field": value}                                  equality
    {"field": {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}
    {"field": {"$in"|"$nin": [value, ...]}}
    {"field": {"$between": [low, high]}}              low <= field <= high
    {"field": {"$gte": 1, "$lt": 5}}                  several operators: all must hold
    {"$and": [...]}  {"$or": [...]}
    {"$not": filter}  {"$not": [filter, ...]}         none of them holds (PGVector's meaning),
                                                      for equality and membership only
    {"$written_at": ...}  {"$expires_at": ...}        the slot's write and expiry times

Any other operator ($like, $ilike, $exists, $contains, ...) is an InvalidFilterError naming
it: a filter the memory cannot apply exactly is refused, never ignored. Values are checked
where the memory compiles the filter.
"""

from __future__ import annotations

from typing import Any

from ...errors import InvalidFilterError
from ...store.filters import SLOT_COLUMNS
from ...validation import shown
from ..where import all_of, negate

_PASSED = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
SUPPORTED_OPERATORS = (*_PASSED, "$between")
LOGICAL_OPERATORS = ("$and", "$or", "$not")


def to_where(filter: Any) -> dict | None:
    """The memory's `where` for a LangChain filter dict (None or {}: no filter)."""
    if filter is None or filter == {}:
        return None
    return _translate(filter)


def _translate(filter: Any) -> dict:
    if not isinstance(filter, dict) or not filter:
        raise InvalidFilterError(f"a filter must be a non-empty dict, got {shown(filter)}")
    clauses = []
    for key, value in filter.items():
        if not isinstance(key, str):
            raise InvalidFilterError(f"filter keys must be strings, got {shown(key)}")
        if key in ("$and", "$or"):
            clauses.append({key: [_translate(sub) for sub in _filter_list(key, value)]})
        elif key == "$not":
            subs = value if isinstance(value, list) else [value]
            clauses.append(all_of([negate(_translate(sub)) for sub in _filter_list(key, subs)]))
        elif key.startswith("$") and key not in SLOT_COLUMNS:
            raise InvalidFilterError(
                f"unsupported filter operator {key!r} at the top of a filter; "
                f"supported: {list(LOGICAL_OPERATORS)} and fields"
            )
        else:
            clauses.append(_condition(key, value))
    return all_of(clauses)


def _filter_list(op: str, value: Any) -> list:
    if not isinstance(value, list) or not value:
        raise InvalidFilterError(f"{op} needs a non-empty list of filters, got {shown(value)}")
    return value


def _condition(field: str, condition: Any) -> dict:
    if isinstance(condition, (list, tuple, set)):
        raise InvalidFilterError(
            f"filter on {field!r}: a list is not a value; use {{'$in': [...]}} for membership"
        )
    if not isinstance(condition, dict):
        return {field: condition}
    if not condition:
        raise InvalidFilterError(f"filter on {field!r} has no operator")
    clauses = []
    for op, operand in condition.items():
        if op in _PASSED:
            clauses.append({field: {op: operand}})
        elif op == "$between":
            if not isinstance(operand, (list, tuple)) or len(operand) != 2:
                raise InvalidFilterError(
                    f"filter on {field!r}: $between needs [low, high], got {shown(operand)}"
                )
            low, high = operand
            clauses += [{field: {"$gte": low}}, {field: {"$lte": high}}]
        else:
            raise InvalidFilterError(
                f"unsupported filter operator {op!r} on {field!r}; "
                f"supported: {list(SUPPORTED_OPERATORS)}"
            )
    return all_of(clauses)
