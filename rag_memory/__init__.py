"""rag_memory: an external memory for language models, on FAISS and SQLite."""

from .cache import CacheConfig
from .errors import (CorruptFileError, DuplicateIdError, EmbedderMismatchError,
                     InvalidFilterError, InvalidInputError, InvalidVectorError,
                     MemoryClosedError, MemoryExistsError, MemoryLockedError, NotAMemoryError,
                     RagMemoryError, ReadOnlyError, UnknownIdError)
from .memory import Memory
from .types import Hit, Slot

__version__ = "0.1.0"

__all__ = [
    "CacheConfig", "CorruptFileError", "DuplicateIdError", "EmbedderMismatchError", "Hit", "InvalidFilterError",
    "InvalidInputError", "InvalidVectorError", "Memory", "MemoryClosedError", "MemoryExistsError",
    "MemoryLockedError", "NotAMemoryError", "RagMemoryError", "ReadOnlyError", "Slot",
    "UnknownIdError",
]
