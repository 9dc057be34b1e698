"""LlamaIndex's `MetadataFilters` as the memory's `where` filters.

Every operator with an exact `where` form is translated: `==`, `!=`, `>`, `>=`, `<`, `<=`,
`in`, `nin`, as are the conditions AND, OR and NOT (none of the filters holds: LlamaIndex's
own meaning) at any nesting; NOT pushes the negation down to the leaves, which the memory
can do exactly for `==`, `!=`, `in`, `nin` (`rag_memory.integrations.where`). A missing field
matches `!=` and `nin`, as in LlamaIndex's own SimpleVectorStore. The operators on arrays
and text (`any`, `all`, `contains`, `text_match`, `text_match_insensitive`) and `is_empty`
have no `where` form: an InvalidFilterError names them rather than matching something else.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilters,
)

from ...errors import InvalidFilterError
from ...store.filters import SLOT_COLUMNS
from ...validation import shown
from ..where import all_of, any_of, negate

OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}
_MEMBERSHIP = (FilterOperator.IN, FilterOperator.NIN)


def to_where(filters: MetadataFilters | None) -> dict | None:
    """The memory's `where` for LlamaIndex filters (None, or none listed: no filter)."""
    if filters is None or not filters.filters:
        return None
    return _group(filters)


def _group(filters: MetadataFilters) -> dict:
    if not filters.filters:
        raise InvalidFilterError("a nested MetadataFilters lists no filters")
    clauses = [
        _group(sub) if isinstance(sub, MetadataFilters) else _leaf(sub) for sub in filters.filters
    ]
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return all_of(clauses)
    if condition == FilterCondition.OR:
        return any_of(clauses)
    if condition == FilterCondition.NOT:
        return negate(any_of(clauses))
    raise InvalidFilterError(f"unknown filter condition {shown(condition)}")


def _leaf(leaf: Any) -> dict:
    """One MetadataFilter (or the legacy ExactMatchFilter, an equality)."""
    operator = getattr(leaf, "operator", FilterOperator.EQ)
    key, value = leaf.key, leaf.value
    if operator not in OPERATORS:
        raise InvalidFilterError(
            f"LlamaIndex filter operator {FilterOperator(operator).value!r} on {key!r} has no "
            f"form in the memory's filters; supported: {[op.value for op in OPERATORS]}"
        )
    if key.startswith("$") and key not in SLOT_COLUMNS:
        raise InvalidFilterError(f"filter key {key!r}: keys starting with $ name no field")
    if isinstance(value, list) != (operator in _MEMBERSHIP):
        raise InvalidFilterError(
            f"filter on {key!r}: {FilterOperator(operator).value!r} takes "
            + ("a list of values" if operator in _MEMBERSHIP else f"one value, not {shown(value)}")
        )
    return {key: {OPERATORS[operator]: value}}
