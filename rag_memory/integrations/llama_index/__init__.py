"""rag_memory as a LlamaIndex vector store (install the `[llama-index]` extra).

from llama_index.core import StorageContext, VectorStoreIndex
from rag_memory.integrations.llama_index import RagMemoryVectorStore

store = RagMemoryVectorStore("memories/notes")
index = VectorStoreIndex.from_documents(
    documents,
    storage_context=StorageContext.from_defaults(vector_store=store),
    embed_model=store.embed_model,
)
"""

from .embeddings import LlamaIndexEmbedder, MemoryEmbedding
from .filters import to_where
from .vectorstore import RagMemoryVectorStore

__all__ = ["LlamaIndexEmbedder", "MemoryEmbedding", "RagMemoryVectorStore", "to_where"]
