"""The one exception hierarchy of rag_memory: every error a user can cause is a RagMemoryError."""

from __future__ import annotations

from pathlib import Path


class RagMemoryError(Exception):
    """Base class of every error rag_memory raises on purpose."""


class InvalidInputError(RagMemoryError, ValueError):
    """An argument is malformed (empty text, bad metadata, k <= 0, ...); nothing was written."""


class InvalidVectorError(InvalidInputError):
    """A vector has the wrong shape or dimension, or holds NaN/inf, or is all zeros."""


class InvalidFilterError(InvalidInputError):
    """A `where` filter does not follow the supported grammar."""


class SearchModeError(InvalidInputError):
    """A search mode or its fusion settings are not valid for this query (an unknown mode, a
    lexical or hybrid mode with a query vector, alpha outside [0, 1], ...)."""


class LexicalIndexMissingError(RagMemoryError):
    """A lexical or hybrid search on a memory without a lexical index (created with
    lexical=False, or written before lexical indexes and opened read-only):
    `rag-memory reindex DIR` builds it."""


class DuplicateIdError(InvalidInputError):
    """An id clashes: catch this for either of its two leaves below."""


class RepeatedIdError(DuplicateIdError):
    """The same id is given twice within one call."""


class IdAlreadyStoredError(DuplicateIdError):
    """`add` names an id that is already stored (`upsert` replaces it)."""


class UnknownIdError(RagMemoryError, KeyError):
    """One or more ids are not stored (or were deleted)."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the message as written
        return str(self.args[0]) if self.args else ""


class NotAMemoryError(RagMemoryError, FileNotFoundError):
    """The path is not a rag_memory directory (no manifest.json)."""


class MemoryExistsError(RagMemoryError, FileExistsError):
    """`Memory.create` was pointed at a path that already holds files."""


class CorruptFileError(RagMemoryError):
    """A file of the memory failed validation; the message names the file and what is wrong."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class StorageError(RagMemoryError, OSError):
    """Reading or writing a memory's file failed below rag_memory (an I/O error, a full disk,
    read-only media). `path` names the file, `errno` says why (EIO, ENOSPC, EROFS...; for
    SQLite, the errno its result code stands for) and the OS or SQLite error is chained as
    `__cause__`. Nothing acknowledged before is lost, nothing of the call is half-applied,
    and the memory opens again at once (a full disk: once there is room)."""

    def __init__(self, path: str | Path, problem: str, errno: int | None = None) -> None:
        super().__init__(errno, problem, str(path))  # OSError's errno, strerror, filename
        self.path = Path(path)
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class UnsyncedReplaceError(StorageError):
    """A file was replaced (renamed over) but its directory could not be synced: the new file
    is the one in place, yet a power cut could still bring the old one back. The caller
    treats the replacement as done and keeps what the old file needs until a later sync."""


class DiskFullError(StorageError):
    """No room left to write (ENOSPC, EDQUOT, EFBIG, SQLITE_FULL): free space and retry."""


class NotWritableError(StorageError):
    """The memory's directory or files cannot be written (a read-only file system or
    permissions): open it with read_only=True to read it."""


class EmbedderMismatchError(RagMemoryError):
    """The embedder asked for differs from the one the memory was built with."""


class OnnxExportError(RagMemoryError):
    """The embedder cannot run through ONNX Runtime: onnxruntime or onnx is not installed, the
    model's layout is not one the export covers, or the export failed. An Embedder with
    backend=None falls back to torch on this error; backend="onnx" raises it."""


class MemoryLockedError(RagMemoryError):
    """Another process holds the memory open for writing."""


class ReadOnlyError(RagMemoryError):
    """A write was attempted on a memory opened with read_only=True."""


class MemoryClosedError(RagMemoryError):
    """The memory was used after close()."""


class BuildInputError(InvalidInputError):
    """A corpus cannot be read as asked (format, fields), or a bad record under --strict."""


class BuildStateError(RagMemoryError):
    """The build's output folder holds state this build cannot continue (another build's)."""


class GenerationInputError(InvalidInputError):
    """An argument of `Generator.answer` / `Memory.generate` is malformed (empty question,
    k < 0, max_new_tokens <= 0, slots that are not strings, ...)."""


class InvalidWeightsError(GenerationInputError):
    """Slot weights or scores do not match the slots, or are negative, NaN or infinite."""


class UnknownFusionError(GenerationInputError):
    """The fusion mode named is not one of the registered modes."""


class ModelLoadError(RagMemoryError):
    """The generator's model (or its device or dtype) cannot be found or read."""


class UnsupportedModelError(RagMemoryError):
    """The generator model cannot be used as asked (e.g. sliding-window attention for xattn)."""


class DistributedError(RagMemoryError):
    """A sharded memory (`rag_memory.distributed.ShardedMemory`) could not do its part on the
    Ray cluster: catch this for either of its leaves below."""


class ShardUnavailableError(DistributedError):
    """A shard's actor cannot be placed or reached: its node is not in the cluster, or the
    actor died and Ray could not restart it in time. Nothing was written by the failed call."""


class ShardWriteError(DistributedError):
    """A write reached some shards but not all: `written` holds the ids whose shard made its
    part durable, `unwritten` those whose shard failed (its error is chained as `__cause__`).
    Nothing is silently dropped; an `upsert` of the same inputs is safe to retry."""

    def __init__(self, message: str, written: list[str], unwritten: list[str]) -> None:
        super().__init__(message)
        self.written = written
        self.unwritten = unwritten


class RemoteError(RagMemoryError):
    """`rag_memory.client.RemoteMemory` could not get an answer from the server: it is
    unreachable, it failed inside (HTTP 500, whose details stay in the server's log), or it
    answered with something that is not the server's JSON."""


class AuthenticationError(RemoteError):
    """The server refused the request's API key (HTTP 401): none was given, or another one."""
