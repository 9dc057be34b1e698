"""What an adapter hands the memory to embed: texts, or vectors its framework's model made.

A memory embeds texts with its own embedder and checks that embedder's dimension; when that
embedder is the store's (the common case), texts go in as they are and a dense text query
goes in as text too (the query cache then keeps its embedding). A framework model embeds a
query with its query embedding (instruction-tuned models prefix queries), so such a query
goes in as a vector; and a store whose model is not the memory's own (a memory passed in,
opened without it) embeds writes itself. Either way its dimension is checked against the
memory's before the first vector goes in.
"""

from __future__ import annotations

import numpy as np

from ..embed import Embedder
from ..memory import Memory
from .embedder import FrameworkEmbedder, query_vector


def dense_query(memory: Memory, embedder: Embedder, text: str) -> str | np.ndarray:
    """The query a dense search of `text` sends the memory (see the module docstring)."""
    if embedder is memory.embedder and not isinstance(embedder, FrameworkEmbedder):
        return text
    embedder.check_dim(memory.manifest.dim)
    return query_vector(embedder, text)


def document_vectors(memory: Memory, embedder: Embedder, texts: list[str]) -> np.ndarray | None:
    """The vectors a write of `texts` hands the memory: None when the memory embeds them with
    `embedder` itself."""
    if embedder is memory.embedder:
        return None
    embedder.check_dim(memory.manifest.dim)
    return embedder.encode(texts)
