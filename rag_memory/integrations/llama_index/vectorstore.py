"""`RagMemoryVectorStore`: a rag_memory `Memory` as a LlamaIndex vector store.

A node is one slot: its id the node id, its text the node's text, its metadata the node's
metadata plus what LlamaIndex's own stores keep beside it (`node_to_metadata_dict`: the node
serialised without its text, and `ref_doc_id` / `doc_id` / `document_id` at the top), so a
node read back is the node written, and `delete(ref_doc_id)` finds a document's nodes by a
`where` on `ref_doc_id`. Slots written without LlamaIndex (`Memory.add`) read back as
TextNodes of their text and metadata.

Query modes: DEFAULT (dense: cosine similarity of the query embedding, or of `query_str`
embedded by the memory's embedder), HYBRID (the memory's hybrid search of `query_str`,
`alpha` the dense leg's weight as in LlamaIndex, `sparse_top_k` the candidates per leg), and
TEXT_SEARCH (BM25 over the memory's lexical index); the latter two need a memory with a
lexical index (the default at create). MMR re-ranks the dense candidates by their stored
vectors (`mmr_threshold` LlamaIndex's lambda, `mmr_prefetch_k` candidates, default 4 * k).
Other modes are a SearchModeError. `similarities` are the mode's scores (cosine, fused,
BM25). The query's `vector_store_kwargs` pass the memory's search options through
(`recency_half_life`, `hops`, `nprobe`, ...).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
from pydantic import PrivateAttr

from ...embed import Embedder
from ...errors import InvalidInputError, SearchModeError
from ...hybrid import DENSE, HYBRID, LEXICAL
from ...memory import Memory
from ...types import Hit
from ..embedder import query_vector
from ..opening import Binding, ClosesMemory, bind
from ..searching import SEARCH_OPTIONS, search_options
from ..vectors import dense_query, document_vectors
from ..where import all_of
from .embeddings import LlamaIndexEmbedder, MemoryEmbedding
from .filters import to_where

logger = logging.getLogger(__name__)

# The metadata key node_to_metadata_dict puts a node's document id under (besides doc_id and
# document_id, kept for other stores' readers).
REF_DOC_KEY = "ref_doc_id"
# LlamaIndex's query modes -> the memory's search modes.
_MODES = {
    VectorStoreQueryMode.DEFAULT: DENSE,
    VectorStoreQueryMode.HYBRID: HYBRID,
    VectorStoreQueryMode.TEXT_SEARCH: LEXICAL,
    VectorStoreQueryMode.MMR: DENSE,
}
# The memory's options a query passes through; its mode comes from VectorStoreQuery.mode.
_QUERY_OPTIONS = tuple(o for o in SEARCH_OPTIONS if o != "mode")
MMR_PREFETCH_FACTOR = 4


class RagMemoryVectorStore(ClosesMemory, BasePydanticVectorStore):
    """A LlamaIndex vector store over a rag_memory `Memory`.

    `memory_or_path`: an open `Memory` (the caller's to close) or a directory, opened, or
    created with `memory_options` (those of `Memory.create`) when it holds no memory yet;
    the store closes a memory it opened (`close()`, or use it as a context manager).

    `embed_model`: a LlamaIndex `BaseEmbedding` recorded in the manifest as the memory's
    embedder (`LlamaIndexEmbedder`), so `query_str` and hybrid searches embed with the model
    the index embeds nodes with. None: the memory's own embedder, handed to LlamaIndex as
    `embed_model` (give it to `VectorStoreIndex(..., embed_model=store.embed_model)`).
    `flat_metadata`: refuse nested metadata values, as LlamaIndex's flat stores do.
    """

    stores_text: bool = True
    flat_metadata: bool = False

    _binding: Binding = PrivateAttr()
    _memory: Memory = PrivateAttr()
    _embedder: Embedder = PrivateAttr()
    _embed_model: BaseEmbedding = PrivateAttr()

    def __init__(
        self,
        memory_or_path: Memory | str | os.PathLike[str],
        embed_model: BaseEmbedding | LlamaIndexEmbedder | None = None,
        *,
        flat_metadata: bool = False,
        **memory_options: Any,
    ) -> None:
        super().__init__(stores_text=True)
        self.flat_metadata = flat_metadata
        self._binding = bind(
            memory_or_path, embed_model, BaseEmbedding, LlamaIndexEmbedder, memory_options
        )
        self._memory, self._embedder = self._binding.memory, self._binding.embedder
        self._embed_model = (
            self._embedder.embed_model
            if isinstance(self._embedder, LlamaIndexEmbedder)
            else MemoryEmbedding(self._embedder)
        )

    @classmethod
    def class_name(cls) -> str:
        return "RagMemoryVectorStore"

    # -- the memory ---------------------------------------------------------------------
    @property
    def client(self) -> Memory:
        """The memory behind the store."""
        return self._memory

    @property
    def memory(self) -> Memory:
        return self._memory

    @property
    def embed_model(self) -> BaseEmbedding:
        """The embedding model to build the index with: the store's model, or the memory's
        own embedder as a LlamaIndex BaseEmbedding."""
        return self._embed_model

    # -- writes ------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Store nodes (a node id already stored is replaced), with their embeddings when
        they have them, else embedded by the store's model. Returns the node ids."""
        if add_kwargs:
            raise InvalidInputError(f"unknown options {sorted(add_kwargs)} for add")
        if not nodes:
            return []
        ids = [node.node_id for node in nodes]
        texts = [node.get_content(metadata_mode=MetadataMode.NONE) for node in nodes]
        metadata = [
            node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata)
            for node in nodes
        ]
        self._memory.upsert(texts, ids, metadata, vectors=self._vectors(nodes, texts))
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document `ref_doc_id` (none stored: nothing to do)."""
        if delete_kwargs:
            raise InvalidInputError(f"unknown options {sorted(delete_kwargs)} for delete")
        if not isinstance(ref_doc_id, str):
            raise InvalidInputError(f"ref_doc_id must be a string, got {ref_doc_id!r}")
        self._delete(self._memory.ids({REF_DOC_KEY: ref_doc_id}))

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete the nodes among `node_ids` that pass `filters`; either None places no
        limit (so neither deletes every node, as in LlamaIndex's SimpleVectorStore)."""
        if delete_kwargs:
            raise InvalidInputError(f"unknown options {sorted(delete_kwargs)} for delete_nodes")
        self._delete(self._select(node_ids, filters))

    def clear(self) -> None:
        """Delete every node."""
        self._delete(self._memory.ids())

    # -- reads -------------------------------------------------------------------------
    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """The stored nodes among `node_ids` (in their order; ids not stored are skipped)
        that pass `filters`; either None places no limit."""
        ids = self._select(node_ids, filters)
        return [_node(s.id, s.text, s.metadata) for s in self._memory.get(ids)] if ids else []

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The top `similarity_top_k` nodes for the query, in the query's mode (see the
        module docstring); `kwargs` pass the memory's search options through."""
        options = search_options(dict(kwargs), _QUERY_OPTIONS + ("mmr_prefetch_k",))
        prefetch = options.pop("mmr_prefetch_k", None)
        if query.node_ids:
            raise InvalidInputError(
                "query.node_ids is not supported: slot ids are not a filter field; filter on "
                "metadata or doc_ids"
            )
        mode = _MODES.get(query.mode)
        if mode is None:
            raise SearchModeError(
                f"query mode {query.mode.value!r} is not one the memory serves; "
                f"supported: {[m.value for m in _MODES]}"
            )
        where = self._where(query)
        k = query.similarity_top_k
        if query.mode == VectorStoreQueryMode.MMR:
            hits, scores = self._mmr(query, where, k, prefetch, options)
        else:
            if prefetch is not None:
                raise InvalidInputError("mmr_prefetch_k applies to MMR queries only")
            if mode == DENSE:
                hits = self._search(self._dense_query(query), k, where, DENSE, options)
            else:
                fused = self._fusion(query, mode, options)
                hits = self._search(self._text(query), k, where, mode, fused)
            scores = [h.score for h in hits]
        return VectorStoreQueryResult(
            nodes=[_node(h.id, h.text, h.metadata) for h in hits],
            similarities=scores,
            ids=[h.id for h in hits],
        )

    # -- internals ---------------------------------------------------------------------
    def _vectors(self, nodes: Sequence[BaseNode], texts: list[str]) -> Any:
        """The nodes' own embeddings, the missing ones made by the store's model; None when
        none has one and the memory embeds with that model itself (the memory checks and
        normalises every row)."""
        missing = [i for i, node in enumerate(nodes) if node.embedding is None]
        if len(missing) == len(nodes):
            return document_vectors(self._memory, self._embedder, texts)
        rows: list[Any] = [node.embedding for node in nodes]
        if missing:
            self._embedder.check_dim(self._memory.manifest.dim)
            made = self._embedder.encode([texts[i] for i in missing])
            for i, row in zip(missing, made.tolist(), strict=True):
                rows[i] = row
        return rows

    def _delete(self, ids: list[str]) -> None:
        if ids:
            self._memory.delete(ids, missing_ok=True)

    def _select(self, node_ids: list[str] | None, filters: MetadataFilters | None) -> list[str]:
        """The stored node ids among `node_ids` (None: all) that pass `filters` (None: all)."""
        where = to_where(filters)
        if node_ids is None:
            return self._memory.ids(where)
        wanted = list(dict.fromkeys(node_ids))
        if not wanted:
            return []
        if where is None:
            stored = self._memory.contains(wanted)
            return [i for i, found in zip(wanted, stored, strict=True) if found]
        passing = set(self._memory.ids(where))
        return [i for i in wanted if i in passing]

    @staticmethod
    def _where(query: VectorStoreQuery) -> dict | None:
        clauses = [w for w in (to_where(query.filters),) if w is not None]
        if query.doc_ids:
            clauses.append({REF_DOC_KEY: {"$in": list(query.doc_ids)}})
        return all_of(clauses) if clauses else None

    def _dense_query(self, query: VectorStoreQuery) -> str | np.ndarray:
        if query.query_embedding is not None:
            return np.asarray(query.query_embedding, dtype=np.float32)
        if query.query_str:
            return dense_query(self._memory, self._embedder, query.query_str)
        raise InvalidInputError("a query needs query_embedding or query_str")

    def _query_vector(self, query: VectorStoreQuery) -> np.ndarray:
        if query.query_embedding is None and query.query_str:
            self._embedder.check_dim(self._memory.manifest.dim)
            return query_vector(self._embedder, query.query_str)
        return cast(np.ndarray, self._dense_query(query))

    @staticmethod
    def _text(query: VectorStoreQuery) -> str:
        if not query.query_str:
            raise SearchModeError(f"a {query.mode.value!r} query needs query_str (its words)")
        return query.query_str

    @staticmethod
    def _fusion(query: VectorStoreQuery, mode: str, options: dict) -> dict:
        """The memory's hybrid settings from the query's alpha and sparse_top_k."""
        settings = {
            key: value
            for key, value in (("alpha", query.alpha), ("fetch_k", query.sparse_top_k))
            if value is not None
        }
        if mode != HYBRID or not settings:
            return options
        if "hybrid" in options:
            raise InvalidInputError(
                "give the hybrid settings once: as the query's alpha / sparse_top_k or as hybrid="
            )
        if "fetch_k" in settings:
            settings["fetch_k"] = max(settings["fetch_k"], query.similarity_top_k)
        return {**options, "hybrid": settings}

    def _mmr(
        self,
        query: VectorStoreQuery,
        where: dict | None,
        k: int,
        prefetch: int | None,
        options: dict,
    ) -> tuple[list[Hit], list[float]]:
        """Dense candidates re-ranked by maximal marginal relevance on their stored vectors
        (LlamaIndex's own get_top_k_mmr_embeddings), with its MMR scores."""
        vector = self._query_vector(query)
        fetch = MMR_PREFETCH_FACTOR * k if prefetch is None else prefetch
        candidates = self._search(vector, max(k, fetch), where, DENSE, options)
        hits, vectors = self._memory.vectors_of(candidates)
        if not hits:
            return [], []
        scores, chosen = get_top_k_mmr_embeddings(
            vector.tolist(),
            vectors.tolist(),
            similarity_top_k=k,
            embedding_ids=list(range(len(hits))),
            mmr_threshold=query.mmr_threshold,
        )
        return [hits[i] for i in chosen], list(scores)

    def _search(
        self, question: str | np.ndarray, k: int, where: dict | None, mode: str, options: dict
    ) -> list[Hit]:
        return cast(
            list[Hit], self._memory.search(question, k=k, where=where, mode=mode, **options)
        )


def _node(id: str, text: str, metadata: dict[str, Any]) -> BaseNode:
    """The node a slot holds; a slot written without LlamaIndex as a TextNode."""
    if "_node_content" not in metadata:
        return TextNode(id_=id, text=text, metadata=metadata)
    return metadata_dict_to_node(metadata, text)
