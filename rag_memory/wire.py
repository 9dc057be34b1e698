"""The JSON shape of what `Memory` returns and raises, shared by the server and its client.

One home for both directions, so a field the server sends is a field the client reads: a `Hit`
that crosses HTTP compares equal to the one the memory returned (scores are Python floats,
which JSON carries exactly), and an error comes back as the same `RagMemoryError` subclass.
Imports nothing beyond the standard library and rag_memory's own types: the client must not
need the server's dependencies.
"""

from __future__ import annotations

import json
from typing import Any

from . import errors
from .errors import CorruptFileError, RagMemoryError, StorageError
from .generate.types import Answer
from .types import CachedHit, Hit, Slot, WriteResult


def hit_to_json(hit: Hit) -> dict[str, Any]:
    """A hit with every field `Hit` exposes (legs, read hop and relevance, cache marks)."""
    return {
        "id": hit.id,
        "score": hit.score,
        "text": hit.text,
        "metadata": hit.metadata,
        "address": hit.address,
        "written_at": hit.written_at,
        "dense_score": hit.dense_score,
        "dense_rank": hit.dense_rank,
        "lexical_score": hit.lexical_score,
        "lexical_rank": hit.lexical_rank,
        "hop": hit.hop,
        "relevance": hit.relevance,
        "cached": hit.cached,
        "cache_similarity": hit.cache_similarity,
    }


def hit_from_json(record: dict[str, Any]) -> Hit:
    """The `Hit` (a `CachedHit` when the server's cache answered) `hit_to_json` described."""
    legs_fields = (
        record["dense_score"],
        record["dense_rank"],
        record["lexical_score"],
        record["lexical_rank"],
    )
    legs = None if all(v is None for v in legs_fields) else legs_fields
    common: dict[str, Any] = {"legs": legs, "written_at": record["written_at"]}
    hit: Hit
    if record["cached"]:
        hit = CachedHit(
            record["id"],
            record["score"],
            record["text"],
            address=record["address"],
            metadata_json=json.dumps(record["metadata"], ensure_ascii=False),
            cache_similarity=record["cache_similarity"],
            **common,
        )
    else:
        hit = Hit(
            record["id"],
            record["score"],
            record["text"],
            record["metadata"],
            record["address"],
            **common,
        )
    if record["hop"] != 1 or record["relevance"] is not None:
        hit = hit.reread(record["score"], record["hop"], record["relevance"])
    return hit


def slot_to_json(slot: Slot) -> dict[str, Any]:
    return {
        "id": slot.id,
        "text": slot.text,
        "metadata": slot.metadata,
        "address": slot.address,
        "written_at": slot.written_at,
        "expires_at": slot.expires_at,
    }


def slot_from_json(record: dict[str, Any]) -> Slot:
    return Slot(**record)


def write_to_json(result: WriteResult) -> dict[str, Any]:
    """Ids in input order and `merged` (JSON object keys are strings; read back as ints)."""
    return {"ids": list(result), "merged": {str(i): v for i, v in result.merged.items()}}


def write_from_json(record: dict[str, Any]) -> WriteResult:
    return WriteResult(record["ids"], {int(i): v for i, v in record["merged"].items()})


def answer_to_json(answer: Answer) -> dict[str, Any]:
    return {
        "text": answer.text,
        "hits": [hit_to_json(h) for h in answer.hits],
        "weights": list(answer.weights),
        "fusion": answer.fusion,
        "timings": answer.timings,
    }


def answer_from_json(record: dict[str, Any]) -> Answer:
    return Answer(
        text=record["text"],
        hits=[hit_from_json(h) for h in record["hits"]],
        weights=record["weights"],
        fusion=record["fusion"],
        timings=record["timings"],
    )


def error_to_json(exc: RagMemoryError) -> dict[str, Any]:
    """The error's class name and message, and the fields its constructor needs (a storage or
    corruption error names the file and the problem) so the client raises it as it was."""
    record: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, (StorageError, CorruptFileError)):
        record["path"] = str(exc.path)
        record["problem"] = exc.problem
    if isinstance(exc, StorageError):
        record["errno"] = exc.errno
    return record


def error_from_json(record: dict[str, Any]) -> RagMemoryError:
    """The `RagMemoryError` subclass the record names (rag_memory.errors), built as the server
    built it; a name this version does not know becomes a plain RagMemoryError."""
    found = getattr(errors, str(record.get("error")), None)
    cls = found if isinstance(found, type) and issubclass(found, RagMemoryError) else None
    message = str(record.get("message", ""))
    if cls is None:
        return RagMemoryError(f"{record.get('error')}: {message}")
    if issubclass(cls, StorageError):
        return cls(record.get("path", ""), record.get("problem", message), record.get("errno"))
    if issubclass(cls, CorruptFileError):
        return cls(record.get("path", ""), record.get("problem", message))
    return cls(message)
