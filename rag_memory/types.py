"""Records returned to users: search hits and stored slots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Slot:
    """One stored text slot. `address` is its int64 slot address, never reused."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    address: int = -1


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result; `score` is the inner product of unit vectors (cosine similarity)."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    address: int = -1
