"""Which shards live on the GPU, in RAM and on disk: heat tracking and a greedy placement.

Like an operating system's page cache, the fast tiers hold what was touched most recently and
most often. Heat is a per-shard probe count with exponential decay (half-life in queries), the
same idea as LRU-K / CLOCK-Pro's frequency-with-recency; placement fills the GPU budget, then
the RAM budget, with the hottest shards (Qdrant and Milvus tier segments by access the same way).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class HeatTracker:
    """Decayed probe counts per shard: heat halves every `half_life` queries without probes."""

    def __init__(self, half_life: int, initial: dict[int, float] | None = None) -> None:
        self._decay = 0.5 ** (1.0 / half_life)
        self._lock = threading.Lock()
        self._clock = 0  # queries seen
        self._heat: dict[int, tuple[float, int]] = {
            shard: (value, 0) for shard, value in (initial or {}).items()
        }

    @property
    def queries(self) -> int:
        return self._clock

    def record(self, n_queries: int, probes: dict[int, int]) -> None:
        """Count `n_queries` queries that probed each shard `probes[shard]` times."""
        with self._lock:
            self._clock += n_queries
            for shard, count in probes.items():
                self._heat[shard] = (self._value(shard) + count, self._clock)

    def _value(self, shard: int) -> float:
        value, at = self._heat.get(shard, (0.0, self._clock))
        return value * self._decay ** (self._clock - at)

    def snapshot(self) -> dict[int, float]:
        with self._lock:
            return {shard: self._value(shard) for shard in self._heat}

    def forget(self, shards: Iterable[int]) -> None:
        with self._lock:
            for shard in shards:
                self._heat.pop(shard, None)


def place_shards(
    shards: list[tuple[int, float, int]], gpu_bytes: int, ram_bytes: int | None
) -> dict[int, str]:
    """Greedy placement of (shard id, heat, bytes) into tiers: hottest first into the GPU
    budget, then the RAM budget (None = unlimited), the rest on disk. A shard too big for a
    tier's remaining budget is skipped, so a smaller, cooler one may still fit."""
    placement: dict[int, str] = {}
    gpu_left = gpu_bytes
    ram_left = float("inf") if ram_bytes is None else ram_bytes
    for shard_id, _heat, size in sorted(shards, key=lambda s: (-s[1], s[0])):
        if size <= gpu_left:
            placement[shard_id], gpu_left = "gpu", gpu_left - size
        elif size <= ram_left:
            placement[shard_id], ram_left = "ram", ram_left - size
        else:
            placement[shard_id] = "disk"
    return placement
