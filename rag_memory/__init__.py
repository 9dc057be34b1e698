"""rag_memory: an external memory for language models, on FAISS and SQLite."""

from typing import TYPE_CHECKING, Any

from .cache import CacheConfig
from .errors import (
    CorruptFileError,
    DiskFullError,
    DuplicateIdError,
    EmbedderMismatchError,
    IdAlreadyStoredError,
    InvalidFilterError,
    InvalidInputError,
    InvalidVectorError,
    MemoryClosedError,
    MemoryExistsError,
    MemoryLockedError,
    NotAMemoryError,
    NotWritableError,
    RagMemoryError,
    ReadOnlyError,
    RepeatedIdError,
    StorageError,
    UnknownIdError,
)
from .generate import Answer, GeneratorConfig
from .index.config import IndexConfig
from .memory import Memory
from .types import CachedHit, Hit, Slot

if TYPE_CHECKING:
    from .generate.generator import Generator

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "CacheConfig",
    "CachedHit",
    "CorruptFileError",
    "DiskFullError",
    "DuplicateIdError",
    "EmbedderMismatchError",
    "IdAlreadyStoredError",
    "Generator",
    "GeneratorConfig",
    "Hit",
    "IndexConfig",
    "InvalidFilterError",
    "InvalidInputError",
    "InvalidVectorError",
    "Memory",
    "MemoryClosedError",
    "MemoryExistsError",
    "MemoryLockedError",
    "NotAMemoryError",
    "NotWritableError",
    "RagMemoryError",
    "ReadOnlyError",
    "RepeatedIdError",
    "StorageError",
    "Slot",
    "UnknownIdError",
]


def __getattr__(name: str) -> Any:
    """`Generator` on first access: it brings torch and transformers, which `import rag_memory`
    must not."""
    if name == "Generator":
        from .generate.generator import Generator

        return Generator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
