"""`RagMemoryVectorStore`: a rag_memory `Memory` as a LangChain `VectorStore`.

Scores. `similarity_search_with_score` returns the memory's own score: the cosine similarity
of unit vectors in [-1, 1], higher is more similar (not a distance). Relevance scores
(`similarity_search_with_relevance_scores`, a retriever's `score_threshold`) map it into
[0, 1] by `cosine_relevance`, (1 + cosine) / 2: 1 the same direction, 0.5 orthogonal, 0
opposite. Only a dense search has such a scale; asking relevance scores of a lexical (BM25)
or hybrid (fused) search is a SearchModeError rather than numbers that only look like
relevance.

Search modes. The default is dense (LangChain's similarity search). The search kwargs of
every search method pass the memory's options through (`rag_memory.integrations.searching`):
`mode="hybrid"` or `"lexical"` with `hybrid={...}` for a memory with a lexical index,
`recency_half_life=`, `hops=`, `nprobe=`, `recall_target=`... An unknown kwarg is an error.

Writes are upserts: adding a document under a stored id replaces it (LangChain's
`add_documents` contract), and ids are uuid4 strings when none are given. `delete()` without
ids deletes every document (LangChain's documented meaning); ids that are not stored are
skipped.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from ...errors import InvalidInputError, SearchModeError
from ...hybrid import DENSE
from ...memory import Memory
from ...types import Hit
from ...validation import shown
from ..embedder import query_vector
from ..opening import ClosesMemory, bind
from ..searching import search_options
from ..vectors import dense_query, document_vectors
from .embeddings import LangChainEmbedder, MemoryEmbeddings
from .filters import to_where

logger = logging.getLogger(__name__)

# The options of Memory.upsert that add_texts / add_documents pass through.
_WRITE_OPTIONS = ("ttl", "timestamps")


def cosine_relevance(score: float) -> float:
    """A cosine similarity in [-1, 1] as a relevance in [0, 1]: (1 + cosine) / 2 (clipped,
    for float32 rounding past +-1)."""
    return min(1.0, max(0.0, (1.0 + score) / 2.0))


def _document(id: str, text: str, metadata: dict[str, Any]) -> Document:
    return Document(id=id, page_content=text, metadata=metadata)


def _hit_document(hit: Hit) -> Document:
    return _document(hit.id, hit.text, hit.metadata)


class RagMemoryVectorStore(ClosesMemory, VectorStore):
    """A LangChain vector store over a rag_memory `Memory`.

    `memory_or_path`: an open `Memory` (it stays the caller's to close) or a directory,
    opened, or created with `memory_options` (those of `Memory.create`: `dim`, `index`,
    `lexical`, `ttl`, ...) when it holds no memory yet; the store closes a memory it opened
    (`close()`, or use it as a context manager).

    `embedding`: a LangChain `Embeddings` to embed with, recorded in the manifest as the
    memory's embedder (`LangChainEmbedder`; pass one to set its name or dim), so the memory
    opens again only with the same model. None: the memory's own embedder (all-MiniLM-L6-v2
    unless `embedder=` says otherwise), which `embeddings` hands to LangChain.
    """

    def __init__(
        self,
        memory_or_path: Memory | str | os.PathLike[str],
        embedding: Embeddings | LangChainEmbedder | None = None,
        **memory_options: Any,
    ) -> None:
        self._binding = bind(
            memory_or_path, embedding, Embeddings, LangChainEmbedder, memory_options
        )
        self._memory, self._embedder = self._binding.memory, self._binding.embedder
        self._embeddings: Embeddings = (
            self._embedder.embeddings
            if isinstance(self._embedder, LangChainEmbedder)
            else MemoryEmbeddings(self._embedder)
        )

    # -- the memory ---------------------------------------------------------------------
    @property
    def memory(self) -> Memory:
        """The memory behind the store (for what LangChain has no call for: stats, compact)."""
        return self._memory

    @property
    def embeddings(self) -> Embeddings:
        return self._embeddings

    # -- writes ------------------------------------------------------------------------
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Add or replace texts by id (uuid4 strings for ids not given, or given as None).
        `ttl=` and `timestamps=` are passed to `Memory.upsert`."""
        texts = list(texts)
        unknown = sorted(set(kwargs) - set(_WRITE_OPTIONS))
        if unknown:
            raise InvalidInputError(
                f"unknown options {unknown} for add_texts; those it takes: {list(_WRITE_OPTIONS)}"
            )
        if not texts:
            return []
        ids = [str(uuid.uuid4()) for _ in texts] if ids is None else list(ids)
        ids = [str(uuid.uuid4()) if i is None else i for i in ids]
        vectors = document_vectors(self._memory, self._embedder, texts)
        stored = self._memory.upsert(texts, ids, metadatas, vectors=vectors, **kwargs)
        return list(stored)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id (ids not stored are skipped); `filter=` deletes those
        matching a filter; neither deletes every document (LangChain's meaning of
        `delete()`). Returns True."""
        filter = kwargs.pop("filter", None)
        if kwargs:
            raise InvalidInputError(f"unknown options {sorted(kwargs)} for delete")
        if ids is not None and filter is not None:
            raise InvalidInputError("delete takes ids or a filter, not both")
        if ids is None:
            ids = self._memory.ids(to_where(filter))
        if ids:
            self._memory.delete(list(ids), missing_ok=True)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents among `ids`, in their order, each once (no error for ids
        that are not stored)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        stored = self._memory.contains(wanted)
        present = [i for i, found in zip(wanted, stored, strict=True) if found]
        if not present:
            return []
        return [_document(s.id, s.text, s.metadata) for s in self._memory.get(present)]

    # -- searches ----------------------------------------------------------------------
    def similarity_search(
        self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """(document, score) pairs, best first: cosine similarity for a dense search (the
        default), the mode's own score otherwise (see the module docstring)."""
        hits = self._search_text(query, k, filter, kwargs)
        return [(_hit_document(hit), hit.score) for hit in hits]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[Document]:
        pairs = self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)
        return [doc for doc, _ in pairs]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """(document, cosine similarity) pairs for a query vector, best first."""
        hits = self._search_vector(embedding, k, filter, kwargs)
        return [(_hit_document(hit), hit.score) for hit in hits]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Cosine similarity -> [0, 1]: `cosine_relevance`."""
        return cosine_relevance

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Relevance in [0, 1] of a dense search; with recency (`recency_half_life`) the
        order is the recency-aware one and the relevance the cosine before recency."""
        if kwargs.get("mode", DENSE) != DENSE:
            raise SearchModeError(
                f"relevance scores need a dense search (cosine similarity); a "
                f"{kwargs['mode']!r} search's scores have no [0, 1] scale"
            )
        filter = kwargs.pop("filter", None)
        hits = self._search_text(query, k, filter, kwargs)
        return [
            (
                _hit_document(hit),
                cosine_relevance(hit.score if hit.relevance is None else hit.relevance),
            )
            for hit in hits
        ]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """MMR over the `fetch_k` nearest documents (dense), by their stored vectors."""
        return self.max_marginal_relevance_search_by_vector(
            self._query_vector(query).tolist(), k, fetch_k, lambda_mult, filter, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        if not 0.0 <= lambda_mult <= 1.0:
            raise InvalidInputError(f"lambda_mult must lie in [0, 1], got {shown(lambda_mult)}")
        hits = self._search_vector(embedding, max(k, fetch_k), filter, kwargs)
        hits, vectors = self._memory.vectors_of(hits)
        if not hits:
            return []
        query = np.asarray(embedding, dtype=np.float32)
        chosen = maximal_marginal_relevance(query, vectors.tolist(), lambda_mult=lambda_mult, k=k)
        return [_hit_document(hits[i]) for i in chosen]

    # -- construction from texts ---------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | LangChainEmbedder | None = None,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        memory_or_path: Memory | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> RagMemoryVectorStore:
        """A store at `memory_or_path` (required: where the memory lives) holding `texts`;
        the other kwargs are memory options, as for the constructor."""
        if memory_or_path is None:
            raise InvalidInputError(
                "from_texts needs memory_or_path=: the memory (or its directory) to fill"
            )
        store = cls(memory_or_path, embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    # -- internals ---------------------------------------------------------------------
    def _query_vector(self, text: str) -> np.ndarray:
        self._embedder.check_dim(self._memory.manifest.dim)
        return query_vector(self._embedder, text)

    def _search_text(self, query: str, k: int, filter: Any, options: dict) -> list[Hit]:
        """A text query (a dense one as `rag_memory.integrations.vectors` says)."""
        options = search_options(dict(options))
        mode = options.setdefault("mode", DENSE)
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a string, got {type(query).__name__}")
        question: Any = dense_query(self._memory, self._embedder, query) if mode == DENSE else query
        return cast(
            list[Hit], self._memory.search(question, k=k, where=to_where(filter), **options)
        )

    def _search_vector(self, embedding: Any, k: int, filter: Any, options: dict) -> list[Hit]:
        options = search_options(dict(options))
        if options.get("mode", DENSE) != DENSE:
            raise SearchModeError(f"a query vector is searched densely, not {options['mode']!r}")
        vector = np.asarray(embedding, dtype=np.float32)
        if vector.ndim != 1:
            raise InvalidInputError(f"embedding must be one vector, got shape {vector.shape}")
        return cast(list[Hit], self._memory.search(vector, k=k, where=to_where(filter), **options))
