"""Records returned to users: search hits and stored slots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Slot:
    """One stored text slot. `address` is its int64 slot address, never reused."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    address: int = -1


class Hit:
    """One search result; `score` is the inner product of unit vectors (cosine similarity).

    `metadata` is decoded from its stored JSON on first access: a batch search returns
    thousands of hits, and decoding metadata nobody reads would cost more than the search.
    `cached` says the query cache answered; `cache_similarity` is then the cosine between this
    query and the cached one for a *semantic* hit (the results of a nearby question), None for
    an exact one. Neither takes part in equality: a cached hit equals the fresh one.
    """

    __slots__ = ("id", "score", "text", "address", "cached", "cache_similarity", "_metadata",
                 "_metadata_json")

    def __init__(self, id: str, score: float, text: str, metadata: dict[str, Any] | None = None,
                 address: int = -1, *, metadata_json: str | None = None, cached: bool = False,
                 cache_similarity: float | None = None) -> None:
        self.id = id
        self.score = score
        self.text = text
        self.address = address
        self.cached = cached
        self.cache_similarity = cache_similarity
        self._metadata = metadata if metadata_json is None else None
        self._metadata_json = metadata_json

    @classmethod
    def from_row(cls, row: tuple, score: float) -> Hit:
        """A fresh hit from a slot-table row (id, text, metadata JSON, address): the hot path
        of every search, so it skips __init__'s keyword handling (~40% of a hit's cost)."""
        hit = cls.__new__(cls)
        hit.id, hit.text, hit._metadata_json, hit.address = row
        hit.score = score
        hit.cached = False
        hit.cache_similarity = None
        hit._metadata = None
        return hit

    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            self._metadata = {} if self._metadata_json is None else json.loads(self._metadata_json)
        return self._metadata

    @property
    def metadata_json(self) -> str:
        """The metadata as stored (JSON text), without decoding it."""
        if self._metadata_json is None:
            return json.dumps(self.metadata, ensure_ascii=False)
        return self._metadata_json

    def _key(self) -> tuple:
        return (self.id, self.score, self.text, self.metadata, self.address)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hit) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable metadata dict, like a dataclass

    def __repr__(self) -> str:
        cache = "" if not self.cached else (
            ", cached=True" if self.cache_similarity is None
            else f", cached=True, cache_similarity={self.cache_similarity:.4f}")
        return (f"Hit(id={self.id!r}, score={self.score:.4f}, text={self.text!r}, "
                f"metadata={self.metadata!r}, address={self.address}{cache})")
