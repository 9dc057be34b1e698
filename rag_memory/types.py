"""Records returned to users: search hits and stored slots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# The two row shapes that travel between the slot table and the caches, named once:
# a slot-table row: id, text, metadata JSON, address, write time (None: written before
# write times were recorded), expiry time (None: never)
SlotRow = tuple[str, str, str, int, float | None, float | None]
# what a cached result keeps per hit: id, text, metadata JSON, write time
HitText = tuple[str, str, str, float | None]
# Per hit of a lexical or hybrid search: (dense score, dense rank, lexical score, lexical
# rank), ranks from 1, None for a leg that did not return the slot (rag_memory.hybrid).
Legs = tuple[float | None, int | None, float | None, int | None]


@dataclass(frozen=True, slots=True)
class Slot:
    """One stored text slot. `address` is its int64 slot address, never reused;
    `written_at` when it was written (seconds since the epoch, or the unit of the
    `timestamps` it was added with; None for a slot stored before write times were kept);
    `expires_at` when it expires (None: never)."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    address: int = -1
    written_at: float | None = None
    expires_at: float | None = None


class Hit:
    """One search result. `score` is what the search ranked by: the inner product of unit
    vectors (cosine similarity) for a dense search, BM25 (higher is better) for a lexical
    one, the fused score for a hybrid one (`rag_memory.hybrid`); a lexical or hybrid hit also
    carries each leg's score and rank (`dense_score`, `dense_rank`, `lexical_score`,
    `lexical_rank`; None for a leg that did not return it, and on a dense hit).

    `written_at` is the slot's write time (`Slot.written_at`). A recency-aware or multi-hop
    read (`rag_memory.recall`) also sets `hop`, the hop that read the slot (1 for every
    other search), and `relevance`, the score before recency counted (None otherwise).

    `metadata` is decoded from its stored JSON on first access: a batch search returns
    thousands of hits, and decoding metadata nobody reads would cost more than the search.
    `cached` says the query cache answered (the hit is then a `CachedHit`); neither it nor
    `cache_similarity` takes part in equality: a cached hit equals the fresh one.
    """

    # _row is the slot-table row (id, text, metadata JSON or None, address, times),
    # shared with the row cache rather than copied field by field: building a batch's hits is
    # the library's main cost over FAISS on a small index. _metadata is the decoded dict,
    # once read. _read is (hop, relevance) for a hit of a recency-aware or multi-hop read.
    __slots__ = ("_row", "score", "_metadata", "legs", "_read")
    cached = False
    cache_similarity: float | None = None

    def __init__(
        self,
        id: str,
        score: float,
        text: str,
        metadata: dict[str, Any] | None = None,
        address: int = -1,
        *,
        metadata_json: str | None = None,
        legs: Legs | None = None,
        written_at: float | None = None,
    ) -> None:
        self._row: SlotRow = (id, text, metadata_json, address, written_at, None)  # type: ignore[assignment]
        self.score = score
        self._metadata = metadata
        self.legs = legs
        self._read: tuple[int, float] | None = None

    @classmethod
    def from_row(cls, row: SlotRow, score: float, legs: Legs | None = None) -> Hit:
        """A fresh hit from a slot-table row (id, text, metadata JSON, address, written_at):
        the hot path of every search, so it skips __init__'s keyword handling (~40% of a
        hit's cost)."""
        self = cls.__new__(cls)
        self._row = row
        self.score = score
        self._metadata = None
        self.legs = legs
        self._read = None
        return self

    def reread(self, score: float, hop: int, relevance: float) -> Hit:
        """This hit as a recency-aware or multi-hop read returns it: ranked by `score`, read
        at `hop`, `relevance` its score before recency counted."""
        hit = Hit.from_row(self._row, score, self.legs)
        hit._metadata = self._metadata
        hit._read = (hop, relevance)
        return hit

    def relocated(self, address: int) -> Hit:
        """This hit under another slot address, all else kept: how a sharded memory
        (`rag_memory.distributed`) numbers its members' slots apart, since each member counts
        addresses from 0."""
        hit = Hit.from_row((*self._row[:3], address, *self._row[4:]), self.score, self.legs)
        hit._metadata = self._metadata
        hit._read = self._read
        return hit

    @property
    def written_at(self) -> float | None:
        return self._row[4]

    @property
    def hop(self) -> int:
        return 1 if self._read is None else self._read[0]

    @property
    def relevance(self) -> float | None:
        return None if self._read is None else self._read[1]

    @property
    def dense_score(self) -> float | None:
        return None if self.legs is None else self.legs[0]

    @property
    def dense_rank(self) -> int | None:
        return None if self.legs is None else self.legs[1]

    @property
    def lexical_score(self) -> float | None:
        return None if self.legs is None else self.legs[2]

    @property
    def lexical_rank(self) -> int | None:
        return None if self.legs is None else self.legs[3]

    @property
    def id(self) -> str:
        return self._row[0]

    @property
    def text(self) -> str:
        return self._row[1]

    @property
    def address(self) -> int:
        """The slot address (int64, never reused); -1 for a hit made without one."""
        return self._row[3]

    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            stored = self._row[2]
            self._metadata = {} if stored is None else json.loads(stored)
        return self._metadata

    @property
    def metadata_json(self) -> str:
        """The metadata as stored (JSON text), without decoding it."""
        stored = self._row[2]
        return json.dumps(self.metadata, ensure_ascii=False) if stored is None else stored

    def hit_text(self) -> HitText:
        """What a cached result keeps of this hit."""
        return (self.id, self.text, self.metadata_json, self.written_at)

    def _key(self) -> tuple:
        return (self.id, self.score, self.text, self.metadata, self.address, self.written_at)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hit) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable metadata dict, like a dataclass

    def __repr__(self) -> str:
        cache = (
            ""
            if not self.cached
            else (
                ", cached=True"
                if self.cache_similarity is None
                else f", cached=True, cache_similarity={self.cache_similarity:.4f}"
            )
        )
        return (
            f"Hit(id={self.id!r}, score={self.score:.4f}, text={self.text!r}, "
            f"metadata={self.metadata!r}, address={self.address}{cache})"
        )


class CachedHit(Hit):
    """A hit the query cache answered. `cache_similarity` is the cosine between this query and
    the cached one for a *semantic* hit (the results of a nearby question), None for an exact
    one."""

    __slots__ = ("cached", "cache_similarity")

    def __init__(
        self,
        id: str,
        score: float,
        text: str,
        *,
        address: int,
        metadata_json: str,
        cache_similarity: float | None,
        legs: Legs | None = None,
        written_at: float | None = None,
    ) -> None:
        super().__init__(
            id,
            score,
            text,
            address=address,
            metadata_json=metadata_json,
            legs=legs,
            written_at=written_at,
        )
        self.cached = True
        self.cache_similarity = cache_similarity


class WriteResult(list[str]):
    """The ids a write stored its inputs under, in input order (a list, as before), and
    `merged`: input position -> the id of the slot that input merged into, for every input
    dedupe folded into a stored slot or into an earlier input of the same call (empty
    without dedupe)."""

    def __init__(self, ids: list[str], merged: dict[int, str] | None = None) -> None:
        super().__init__(ids)
        self.merged: dict[int, str] = {} if merged is None else merged
