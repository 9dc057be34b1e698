"""When a slot was written and when it expires: the argument checks and the one clock.

Every slot records its write time (`Slot.written_at`, `Hit.written_at`; a column of the slot
table, filterable as `where={"$written_at": {"$gte": t}}`). By default it is the wall clock
at the write, in seconds since the epoch; `add(..., timestamps=[...])` lets an imported
history keep its own times, in any unit (a story's line numbers, say), and recency-aware
reads (`rag_memory.recency`) then work in that unit.

Expiry is wall-clock time: a slot written at t with a ttl of s seconds is hidden from every
read once `now() >= t + s` and removed for good by `compact()`. A ttl is therefore only
meaningful for slots whose write times are seconds since the epoch (the default).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .validation import is_number, shown

NEVER = math.inf  # the ttl of a slot that does not expire (stored as no expiry time)


def now() -> float:
    """The clock expiry is judged by (seconds since the epoch); the one place it is read, so
    tests can move time by replacing this function."""
    return time.time()


def _per_slot(values: Any, n: int, name: str) -> list[Any]:
    """`values` as a list of `n` items: a list, tuple or 1-D array of n, or one number for
    every slot."""
    if is_number(values):
        return [values] * n
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise InvalidInputError(f"{name} must be 1-D, got an array of shape {values.shape}")
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise InvalidInputError(
            f"{name} must be a number or a list of {n} numbers, got {shown(values)}"
        )
    return list(values)


def check_timestamps(timestamps: Any, n: int) -> list[float] | None:
    """Per-slot write times (finite numbers), or None to use the clock."""
    if timestamps is None:
        return None
    values = _per_slot(timestamps, n, "timestamps")
    for i, value in enumerate(values):
        if not is_number(value) or not math.isfinite(value):
            raise InvalidInputError(f"timestamps[{i}] must be a finite number, got {shown(value)}")
    return [float(v) for v in values]


def check_ttl_value(ttl: Any, name: str = "ttl") -> float | None:
    """One ttl: None, a number of seconds > 0, or math.inf (never expires)."""
    if ttl is None:
        return None
    if not is_number(ttl) or math.isnan(ttl) or ttl <= 0:
        raise InvalidInputError(
            f"{name} must be a number of seconds > 0 (math.inf: never expires) or None, "
            f"got {shown(ttl)}"
        )
    return float(ttl)


def check_ttl(ttl: Any, n: int) -> list[float | None]:
    """Per-slot ttls (None: the memory's default) from one value or a list of n."""
    if ttl is None:
        return [None] * n
    values = _per_slot(ttl, n, "ttl")
    return [check_ttl_value(v, f"ttl[{i}]") for i, v in enumerate(values)]


def expiry_times(
    written: Sequence[float], ttls: Sequence[float | None], default_ttl: float | None
) -> list[float | None]:
    """When each slot expires (None: never): its write time plus its ttl, or the memory's."""
    out: list[float | None] = []
    for t, ttl in zip(written, ttls, strict=True):
        ttl = default_ttl if ttl is None else ttl
        out.append(None if ttl is None or ttl == NEVER else t + ttl)
    return out
