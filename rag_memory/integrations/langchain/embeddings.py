"""Embedding models across the LangChain boundary, both ways.

`LangChainEmbedder` makes a LangChain `Embeddings` the memory's embedder, so the manifest
records it (its name and dimension, checked at every open like any embedder's).
`MemoryEmbeddings` hands the memory's own embedder to LangChain (`VectorStore.embeddings`),
so what LangChain embeds itself (a retriever, an MMR query) meets the stored vectors.
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from ...embed import Embedder
from ..embedder import LANGCHAIN, FrameworkEmbedder, framework_embedder_name, query_vector


class LangChainEmbedder(FrameworkEmbedder):
    """A LangChain `Embeddings` as the memory's embedder: `embed_documents` for slots,
    `embed_query` for queries. `name` (default `langchain:<module.Class>[:<model>]`) is what
    the manifest records; `dim` skips the probe that measures it."""

    def __init__(
        self, embeddings: Embeddings, name: str | None = None, dim: int | None = None
    ) -> None:
        super().__init__(
            name or framework_embedder_name(LANGCHAIN, embeddings),
            embeddings.embed_documents,
            embeddings.embed_query,
            dim,
        )
        self.embeddings = embeddings


class MemoryEmbeddings(Embeddings):
    """A memory's `Embedder` as a LangChain `Embeddings` (unit vectors as lists of floats)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.encode(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return query_vector(self.embedder, text).tolist()
