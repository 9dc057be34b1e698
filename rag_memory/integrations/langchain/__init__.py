"""rag_memory as a LangChain vector store (install the `[langchain]` extra).

from rag_memory.integrations.langchain import RagMemoryVectorStore

store = RagMemoryVectorStore("memories/notes")          # the memory's own embedder
store = RagMemoryVectorStore("memories/notes", embedding=some_langchain_embeddings)
"""

from .embeddings import LangChainEmbedder, MemoryEmbeddings
from .filters import to_where
from .vectorstore import RagMemoryVectorStore, cosine_relevance

__all__ = [
    "LangChainEmbedder",
    "MemoryEmbeddings",
    "RagMemoryVectorStore",
    "cosine_relevance",
    "to_where",
]
