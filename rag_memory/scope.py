"""Scopes: a user's or a session's part of a memory, as a view.

Agent memories keep one store for many users and conversations and read only the part a turn
belongs to (mem0's user_id / agent_id / run_id, Zep's sessions). Here a scope is a set of
metadata fields: `memory.scope(user="alice", session="s1")` is a view whose writes carry
those fields and whose reads are filtered on them (AND-ed with any `where` of the call), so
code written against a view can neither see nor overwrite another scope's slots. Dedupe on a
view's writes compares only within the scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError, UnknownIdError
from .validation import shown

if TYPE_CHECKING:
    from .generate import Answer
    from .generate.stream import PieceStream
    from .memory import Memory
    from .types import Slot, WriteResult


def check_scope(fields: Any) -> dict[str, Any]:
    """Scope fields: a non-empty dict of metadata keys to str, int, float or bool values."""
    if not isinstance(fields, dict) or not fields:
        raise InvalidInputError(f"a scope needs at least one metadata field, got {shown(fields)}")
    for key, value in fields.items():
        if not isinstance(key, str) or not key or key.startswith("$"):
            raise InvalidInputError(f"scope keys must be metadata keys, got {shown(key)}")
        if not isinstance(value, (str, int, float, bool)):
            raise InvalidInputError(
                f"scope field {key!r} must be a str, int, float or bool, got {shown(value)}"
            )
    return dict(fields)


def scoped_metadata(metadata: Any, n: int, scope: dict[str, Any] | None) -> Any:
    """The metadata of n slots with the scope's fields added; a slot whose own metadata gives
    a scope field another value is refused (it would be written outside the scope)."""
    if scope is None:
        return metadata
    items = [metadata] * n if metadata is None or isinstance(metadata, dict) else metadata
    if not isinstance(items, (list, tuple)) or len(items) != n:
        raise InvalidInputError(f"metadata must be a list of {n} dicts")
    out = []
    for i, meta in enumerate(items):
        meta = {} if meta is None else meta
        if not isinstance(meta, dict):
            raise InvalidInputError(f"metadata[{i}] must be a dict, got {shown(meta)}")
        clash = {k: meta[k] for k in scope if k in meta and meta[k] != scope[k]}
        if clash:
            raise InvalidInputError(
                f"metadata[{i}] sets scope fields to other values than the scope's: {clash}"
            )
        out.append({**meta, **scope})
    return out


class MemoryScope:
    """A view of one memory restricted to the slots whose metadata holds `fields`.

    Writes (`add`, `upsert`, `remember`, `generate(remember=True)`) add the fields to every
    slot; reads (`search`, `generate`, `get`, `contains`) see only slots holding them; `delete`
    deletes only such slots. Every other argument is the memory's own."""

    def __init__(self, memory: Memory, fields: dict[str, Any]) -> None:
        self.memory = memory
        self.fields = fields

    def __repr__(self) -> str:
        return f"MemoryScope({self.memory!r}, {self.fields!r})"

    def where(self, where: dict | None = None) -> dict:
        """The scope's filter, AND-ed with `where`."""
        return dict(self.fields) if where is None else {"$and": [dict(self.fields), where]}

    def scope(self, fields: dict[str, Any] | None = None, **more: Any) -> MemoryScope:
        """A narrower view: this scope's fields and `fields`."""
        extra = check_scope({**(fields or {}), **more})
        clash = {k for k in extra if k in self.fields and extra[k] != self.fields[k]}
        if clash:
            raise InvalidInputError(f"a narrower scope cannot change fields {sorted(clash)}")
        return MemoryScope(self.memory, {**self.fields, **extra})

    # -- writes ------------------------------------------------------------------------
    def add(
        self,
        texts: str | list[str],
        ids: str | list[str] | None = None,
        metadata: dict | list[dict] | None = None,
        vectors: Any = None,
        **options: Any,
    ) -> WriteResult:
        """`Memory.add` within the scope (dedupe compares within it)."""
        return self.memory.add(texts, ids, metadata, vectors, scope=self.fields, **options)

    def upsert(
        self,
        texts: str | list[str],
        ids: str | list[str],
        metadata: dict | list[dict] | None = None,
        vectors: Any = None,
        **options: Any,
    ) -> WriteResult:
        """`Memory.upsert` within the scope; an id stored in another scope is refused."""
        return self.memory.upsert(texts, ids, metadata, vectors, scope=self.fields, **options)

    def remember(
        self, text: str, role: str = "user", metadata: dict | None = None, **options: Any
    ) -> str:
        """`Memory.remember` within the scope."""
        return self.memory.remember(text, role, metadata, scope=self.fields, **options)

    def delete(self, ids: str | list[str]) -> None:
        """Delete slots of this scope by id; an id not stored in the scope deletes nothing."""
        self.get(ids)  # UnknownIdError for an id outside the scope
        self.memory.delete(ids)

    # -- reads -------------------------------------------------------------------------
    def get(self, ids: str | list[str]) -> list[Slot]:
        """The scope's slots for `ids`; UnknownIdError for an id not stored in the scope."""
        slots = self.memory.get(ids)
        outside = [s.id for s in slots if not holds(s.metadata, self.fields)]
        if outside:
            raise UnknownIdError(f"unknown ids in scope {self.fields}: {outside[:5]}")
        return slots

    def contains(self, ids: str | list[str]) -> list[bool]:
        """Whether each id is stored in this scope."""
        listed = [ids] if isinstance(ids, str) else list(ids)
        found = self.memory.contains(listed)
        present = [i for i, f in zip(listed, found, strict=True) if f]
        inside = {s.id for s in self.memory.get(present) if holds(s.metadata, self.fields)}
        return [i in inside for i in listed]

    def search(self, query: Any, k: int = 10, where: dict | None = None, **options: Any) -> Any:
        """`Memory.search` over the scope's slots."""
        return self.memory.search(query, k, self.where(where), **options)

    def generate(
        self,
        question: str,
        k: int = 5,
        fusion: str | None = None,
        where: dict | None = None,
        **options: Any,
    ) -> Answer:
        """`Memory.generate` from the scope's slots; `remember=True` writes back into it."""
        return self.memory.generate(
            question, k, fusion, self.where(where), scope=self.fields, **options
        )

    def generate_stream(
        self,
        question: str,
        k: int = 5,
        fusion: str | None = None,
        where: dict | None = None,
        **options: Any,
    ) -> PieceStream:
        """`Memory.generate_stream` from the scope's slots."""
        return self.memory.generate_stream(
            question, k, fusion, self.where(where), scope=self.fields, **options
        )


def holds(metadata: dict[str, Any], fields: dict[str, Any]) -> bool:
    """Whether a slot's metadata holds every scope field with the same value and JSON type
    (1 is not True, as in `where`)."""
    return all(
        k in metadata and metadata[k] == v and type(metadata[k]) is type(v)
        for k, v in fields.items()
    )
