"""Building `where` filters (`rag_memory.store.filters`) from other grammars: the joins and
the one negation the grammar can express exactly.

The grammar has no NOT. A negation is pushed down to the leaves (De Morgan) where a leaf has
an exact opposite: `$eq`/`$ne` and `$in`/`$nin` (a slot without the field matches `$ne` and
`$nin`, so each pair covers every slot exactly once). An ordered comparison has none (`$gt`
negated is not `$lte` for a slot without the field, or with a string there), so negating one
is an InvalidFilterError, never an approximation.
"""

from __future__ import annotations

from ..errors import InvalidFilterError
from ..validation import shown

_OPPOSITE = {"$eq": "$ne", "$ne": "$eq", "$in": "$nin", "$nin": "$in"}
_LOGICAL_OPPOSITE = {"$and": "$or", "$or": "$and"}


def all_of(filters: list[dict]) -> dict:
    """Filters AND-ed (one filter as itself)."""
    return filters[0] if len(filters) == 1 else {"$and": filters}


def any_of(filters: list[dict]) -> dict:
    """Filters OR-ed (one filter as itself)."""
    return filters[0] if len(filters) == 1 else {"$or": filters}


def negate(where: dict) -> dict:
    """The `where` true exactly where `where` is false (see the module docstring)."""
    clauses: list[dict] = []
    for key, value in where.items():
        if key in _LOGICAL_OPPOSITE:
            clauses.append({_LOGICAL_OPPOSITE[key]: [negate(sub) for sub in value]})
            continue
        condition = value if isinstance(value, dict) else {"$eq": value}
        op = next(iter(condition)) if len(condition) == 1 else None
        if op not in _OPPOSITE:
            raise InvalidFilterError(
                f"cannot negate {key!r} {shown(condition)}: the memory's filters negate "
                "only equality and membership ($eq, $ne, $in, $nin) exactly"
            )
        clauses.append({key: {_OPPOSITE[op]: condition[op]}})
    # not (a and b) = (not a) or (not b)
    return any_of(clauses)
