"""Embedding models across the LlamaIndex boundary, both ways.

`LlamaIndexEmbedder` makes a LlamaIndex `BaseEmbedding` the memory's embedder (recorded in
the manifest, its dimension checked at every write like any embedder's). `MemoryEmbedding`
hands the memory's own embedder to LlamaIndex as a `BaseEmbedding`, so the embeddings an
index computes for nodes and queries are the memory's: pass `store.embed_model` to
`VectorStoreIndex`. A hybrid search embeds its dense leg inside the memory, so the index's
model and the memory's must be the same one for its two legs to agree.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from ...embed import Embedder
from ..embedder import LLAMA_INDEX, FrameworkEmbedder, framework_embedder_name, query_vector


class LlamaIndexEmbedder(FrameworkEmbedder):
    """A LlamaIndex `BaseEmbedding` as the memory's embedder: text embeddings for slots,
    query embeddings for queries. `name` (default `llama_index:<module.Class>:<model_name>`)
    is what the manifest records; `dim` skips the probe that measures it."""

    def __init__(
        self, embed_model: BaseEmbedding, name: str | None = None, dim: int | None = None
    ) -> None:
        super().__init__(
            name or framework_embedder_name(LLAMA_INDEX, embed_model),
            embed_model.get_text_embedding_batch,
            embed_model.get_query_embedding,
            dim,
        )
        self.embed_model = embed_model


class MemoryEmbedding(BaseEmbedding):
    """A memory's `Embedder` as a LlamaIndex `BaseEmbedding` (unit vectors)."""

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.name, **kwargs)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "RagMemoryEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return query_vector(self._embedder, query).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.encode([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.encode(list(texts)).tolist()
