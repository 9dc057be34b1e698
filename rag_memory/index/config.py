"""IndexConfig: how sealed shards are built, probed, placed and merged (one frozen dataclass).

Stored in the manifest, so a memory reopens with the settings it was built with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import InvalidInputError
from ..validation import check_int, check_recall_target, config_from_dict
from .codecs import SEALED_KINDS

DEFAULT_RECALL_TARGET = 0.95

KINDS = ("auto", *SEALED_KINDS)


@dataclass(frozen=True)
class IndexConfig:
    """Settings of the tiered index. Defaults suit 10^5-10^7 vectors of dim 384 on a CPU."""

    kind: str = "auto"
    """Codec of sealed shards (`codecs.py`): "ivf_fp16", "ivf_flat", "ivf_pq", or "auto"
    (IVF-fp16 if its codes for `expected_vectors` fit the RAM budget, else IVF-PQ)."""
    nlist: int | None = None
    """Partitions of the coarse quantizer (the router); None: 4*sqrt(n) at the first seal,
    capped so that every centroid trains on >= 39 points (the FAISS guideline)."""
    nprobe: int | None = None
    """Partitions probed per query; None: the fewest that reach `recall_target` by the
    router's recall curve, estimated at the first seal (`recall_curve.py`)."""
    recall_target: float = DEFAULT_RECALL_TARGET
    """The recall@10 the default nprobe aims at (when `nprobe` is None)."""
    pq_m: int | None = None
    """IVF-PQ sub-quantizers of 8 bits; None: dim // 8 (48 bytes per vector at dim 384)."""
    refine_factor: int = 40
    """IVF-PQ: k * refine_factor candidates are re-ranked with their full-precision vectors read
    from disk (FAISS IndexRefine, LanceDB refine_factor): PQ codes alone rank poorly. Measured
    on 2M x 384 mixture vectors with 48-byte codes: recall@10 0.69 at 10, 0.91 at 30, 0.997
    at 100 (bench/tiered_scale.py)."""
    seal_threshold: int = 100_000
    """The growing (exact, in-RAM) shard is sealed into IVF shards when it holds this many."""
    shard_groups: int | None = None
    """Partition groups; each sealed shard holds the partitions of one group, grouped by
    k-means over the centroids so that nearby partitions share a shard. None: nlist // 16."""
    merge_threshold: int = 4
    """A group whose sealed shards (one per seal) reach this count is merged into one."""
    heat_half_life: int = 2000
    """Queries after which a shard's probe count (its heat) has decayed by half."""
    rebalance_every: int = 1000
    """Queries between automatic rebalances (0: only when rebalance() is called)."""
    expected_vectors: int | None = None
    """Hint for "auto" and nlist when the memory will grow past its first seal (e.g. a build)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInputError(f"IndexConfig.kind must be one of {KINDS}, got {self.kind!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("kind", "recall_target") or value is None:
                continue
            minimum = 0 if f.name == "rebalance_every" else 1
            check_int(value, f"IndexConfig.{f.name}", minimum)
        check_recall_target(self.recall_target, "IndexConfig.recall_target")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IndexConfig:
        """Build from a plain dict (e.g. parsed JSON); an unknown key is an error, not ignored."""
        return config_from_dict(cls, values)
