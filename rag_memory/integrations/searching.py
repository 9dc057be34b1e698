"""The options of `Memory.search` an adapter passes through from its framework's search
arguments (LangChain's search kwargs, LlamaIndex's vector_store_kwargs): search modes,
recency and multi-hop reads, the index's recall knobs. An option the memory does not have is
an error naming the ones it has, never dropped."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError

SEARCH_OPTIONS = (
    "mode",
    "hybrid",
    "recency_half_life",
    "hops",
    "recall",
    "nprobe",
    "refine_factor",
    "recall_target",
    "cache",
)


def search_options(options: dict[str, Any], allowed: tuple[str, ...] = SEARCH_OPTIONS) -> dict:
    """`options` when each is one `Memory.search` takes (its values are checked there)."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InvalidInputError(
            f"unknown search options {unknown}; those the memory takes: {list(allowed)}"
        )
    return options
