"""A shard: one member memory opened inside a Ray actor, for as long as the actor lives.

The actor is the member's only writer (it holds the member's writer lock) and answers its
part of every call of `ShardedMemory`. When its process dies, Ray restarts it and runs the
constructor again, which reopens the directory: every write the member acknowledged is on
disk (`Memory`'s guarantee), so the restarted shard answers as the old one did. Reads are
marked retryable (`READ_RETRIES`); writes are not, so a write lost with the process fails
at the caller instead of being applied twice or silently dropped.

Errors cross the process boundary as `wire.error_to_json` records (`MemberError`), so the
client raises the member's own `RagMemoryError` subclass, built as the member built it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import ray

from ..errors import RagMemoryError
from ..manifest import MANIFEST_NAME
from ..memory import Memory
from ..types import Hit, Slot
from ..wire import error_to_json
from .runtime import READ_RETRIES


class MemberError(Exception):
    """A member's RagMemoryError as a plain record (any exception Ray ships must unpickle
    with its args alone; `CorruptFileError` and `StorageError` take more)."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record)
        self.record = record


def _portable(method: Any) -> Any:
    """Outside `ray.method`: Ray reads a method's options from the unwrapped function."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except RagMemoryError as exc:
            raise MemberError(error_to_json(exc)) from None

    return call


class Shard:
    """The actor class (`ray.remote(Shard)`): one member memory and its part of each call."""

    def __init__(
        self, directory: str, create: dict[str, Any] | None, open_options: dict[str, Any]
    ) -> None:
        """Open the member at `directory`, creating it first with `create` (Memory.create's
        arguments) when it holds no memory yet: a restarted actor reopens what it created.
        The member's query cache is off: the sharded memory's cache sits in its client."""
        path = Path(directory)
        if create is not None and not (path / MANIFEST_NAME).exists():
            self._memory = Memory.create(path, cache=None, **create)
        else:
            self._memory = Memory.open(path, cache=None, **open_options)

    @_portable
    @ray.method(max_task_retries=READ_RETRIES)
    def describe(self) -> dict[str, Any]:
        """Where this shard runs (node, IP, worker pid) and what its member offers."""
        context = ray.get_runtime_context()
        return {
            "node": context.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "path": str(self._memory.path),
            "lexical": self._memory.stats()["lexical"]["ready"],
        }

    # -- writes (never retried: see the module docstring) -------------------------------
    @_portable
    def write(
        self,
        replace: bool,
        texts: list[str],
        ids: list[str],
        metadata: list[dict[str, Any]],
        vectors: np.ndarray,
        options: dict[str, Any],
    ) -> int:
        """Add (or with `replace`, upsert) the shard's part of a write; durable on return."""
        write = self._memory.upsert if replace else self._memory.add
        write(texts, ids, metadata, vectors, **options)
        return len(ids)

    @_portable
    def delete(self, ids: list[str]) -> None:
        self._memory.delete(ids, missing_ok=True)

    @_portable
    def compact(self) -> dict[str, int]:
        return self._memory.compact()

    @_portable
    def reindex(self, lexical: Any) -> None:
        self._memory.reindex(lexical)

    @_portable
    def rebalance(self) -> dict[int, str]:
        return self._memory.rebalance()

    # -- reads (retried on the restarted actor) -----------------------------------------
    @_portable
    @ray.method(max_task_retries=READ_RETRIES)
    def search(
        self, queries: tuple[Any, np.ndarray | None], k: int, where: Any, options: dict[str, Any]
    ) -> list[list[Hit]]:
        """The shard's top k per query. `queries`, one object in Ray's store for all shards:
        (an (n, dim) array, None) or (n texts, their vectors where the client embedded them)."""
        query, vectors = queries
        return self._memory.search(query, k, where, query_vectors=vectors, **options)

    @_portable
    @ray.method(max_task_retries=READ_RETRIES)
    def get(self, ids: list[str]) -> list[Slot]:
        return self._memory.get(ids)

    @_portable
    @ray.method(max_task_retries=READ_RETRIES)
    def contains(self, ids: list[str]) -> list[bool]:
        return self._memory.contains(ids)

    @_portable
    @ray.method(max_task_retries=READ_RETRIES)
    def ids(self, where: Any) -> list[str]:
        return self._memory.ids(where)

    @_portable
    @ray.method(max_task_retries=READ_RETRIES)
    def vectors_of(self, hits: list[Hit]) -> tuple[list[int], np.ndarray]:
        """(the member addresses of the hits still stored, their vectors)."""
        kept, vectors = self._memory.vectors_of(hits)
        return [h.address for h in kept], vectors

    @_portable
    @ray.method(max_task_retries=READ_RETRIES)
    def count(self) -> int:
        return len(self._memory)

    @_portable
    @ray.method(max_task_retries=READ_RETRIES)
    def stats(self) -> dict[str, Any]:
        return self._memory.stats()

    @_portable
    def close(self) -> None:
        self._memory.close()
