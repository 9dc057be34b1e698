"""Index choice under a memory budget: a pure function from (vectors, dim, budget) to an IndexPlan.

The heuristics follow autofaiss (`autofaiss/external/optimize.py`: `get_optimal_index_keys_v2`,
`get_optimal_nb_clusters`, `get_optimal_quantization`; `external/metadata.py` for the size
estimates) and the FAISS wiki page "Guidelines to choose an index":

- below `FLAT_MAX_VECTORS` (autofaiss' `quantization_threshold`, 10,000) an exact flat index:
  a scan of that many vectors takes well under a millisecond, and PQ cannot be trained anyway
  (it needs 2**nbits * 39 = 9,984 points);
- otherwise IVF, with nlist = the power of two nearest 4 * sqrt(n) below 1M vectors (the wiki's
  "between 4*sqrt(n) and 16*sqrt(n)"), 16,384 below 10M, 65,536 below 300M, 2**17 beyond
  (autofaiss' first choices), clamped so that every centroid gets at least 39 training points
  (FAISS warns below `min_points_per_centroid` = 39);
- IVF-Flat when its codes (4 * dim bytes + an 8-byte id per vector, plus the centroids) fit the
  budget; otherwise IVF-PQ with 8-bit codes and the largest number of sub-quantizers m from
  autofaiss' list (256, 128, 64, 48, 32, 24, 16, 8, 4) that divides dim and fits the budget.

Two choices are ours, not autofaiss' (it tunes nprobe by timing a built index, and has no
shards): `nprobe` starts at ceil(sqrt(nlist)), at least 8 (a common starting point, to be tuned
on data), and the index is split into shards of about budget / 8 (16 MiB to 256 MiB each) so the
tier policy can hold the hot part of the index in a fast tier at a fine grain.

`IndexPlan` is consumed by the tiered index: its fields and their meaning are stable.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import InvalidInputError

FLAT_MAX_VECTORS = 10_000  # autofaiss quantization_threshold
MIN_POINTS_PER_CENTROID = 39  # FAISS ClusteringParameters.min_points_per_centroid
MAX_POINTS_PER_CENTROID = 256  # FAISS subsamples the training set beyond this
PQ_M_CANDIDATES = (256, 128, 64, 48, 32, 24, 16, 8, 4)  # autofaiss get_optimal_quantization
PQ_NBITS = 8
ID_BYTES = 8  # an int64 id per vector in FAISS inverted lists
SHARDS_PER_BUDGET = 8
MIN_SHARD_BYTES = 16 << 20
MAX_SHARD_BYTES = 256 << 20
KINDS = ("flat", "ivf_flat", "ivf_pq")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}


@dataclass(frozen=True)
class IndexPlan:
    """The index layout chosen for a memory. Zero means "not applicable" for the IVF/PQ fields."""

    kind: str  # "flat" | "ivf_flat" | "ivf_pq"
    n_vectors: int  # vectors the plan was made for
    dim: int  # vector dimension
    memory_budget_bytes: int  # the budget the plan was asked to fit
    nlist: int  # IVF coarse centroids (0 for flat)
    pq_m: int  # PQ sub-quantizers, bytes per code at 8 bits (0 unless ivf_pq)
    pq_nbits: int  # bits per PQ sub-code (0 unless ivf_pq)
    nprobe: int  # default inverted lists probed per query (0 for flat)
    train_points: int  # vectors to sample for k-means / PQ training (0 for flat)
    shards: int  # sealed shards the index is split into (by coarse centroid)
    estimated_bytes: int  # codes + ids + centroids (+ PQ codebooks)
    fits_budget: bool  # False when even the smallest plan exceeds the budget
    reason: str  # why this plan, in a sentence a user can read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> IndexPlan:
        """Strict inverse of `to_dict`: unknown or missing keys and wrong types are errors."""
        names = {f.name: f.type for f in fields(cls)}
        if not isinstance(data, dict) or set(data) != set(names):
            raise InvalidInputError(f"an index plan needs exactly the keys {sorted(names)}")
        for name, kind in names.items():
            value = data[name]
            want = {"str": str, "bool": bool}.get(str(kind), int)
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise InvalidInputError(f"index plan field {name!r} must be {want.__name__}")
        if data["kind"] not in KINDS:
            raise InvalidInputError(f"index plan kind must be one of {KINDS}")
        return cls(**data)


def parse_bytes(text: str | int) -> int:
    """'512MiB', '2GB', '1g', '1048576' -> bytes (binary units for *iB, decimal otherwise)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
        if match is None or match.group(2).lower() not in _UNITS:
            raise InvalidInputError(f"not a byte size: {text!r} (e.g. 512MiB, 2GB)")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value <= 0:
        raise InvalidInputError(f"a byte size must be positive, got {text!r}")
    return value


def nlist_for(n_vectors: int) -> int:
    """autofaiss' first choice of IVF centroids, clamped to >= 39 training points per centroid."""
    if n_vectors < 1_000_000:
        nlist = 2 ** round(math.log2(4 * math.sqrt(n_vectors)))
    elif n_vectors < 10_000_000:
        nlist = 16_384
    elif n_vectors < 300_000_000:
        nlist = 65_536
    else:
        nlist = 2**17
    cap = n_vectors // MIN_POINTS_PER_CENTROID
    if nlist > cap:  # keep a power of two, as autofaiss' choices are
        nlist = 2 ** int(math.log2(cap)) if cap >= 1 else 1
    return nlist


def ivf_flat_bytes(n_vectors: int, dim: int, nlist: int) -> int:
    return n_vectors * (4 * dim + ID_BYTES) + nlist * dim * 4


def ivf_pq_bytes(n_vectors: int, dim: int, nlist: int, m: int, nbits: int = PQ_NBITS) -> int:
    codebooks = dim * (1 << nbits) * 4  # m sub-codebooks of 2**nbits centroids of dim/m floats
    return n_vectors * (m * nbits // 8 + ID_BYTES) + nlist * dim * 4 + codebooks


def shard_count(estimated_bytes: int, budget: int, nlist: int) -> int:
    """Shards of ~budget/8 (16-256 MiB), so the tier policy can place the index finely."""
    target = min(MAX_SHARD_BYTES, max(MIN_SHARD_BYTES, budget // SHARDS_PER_BUDGET))
    return max(1, min(max(nlist, 1), math.ceil(estimated_bytes / target)))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def choose_index(n_vectors: int, dim: int, memory_budget_bytes: int) -> IndexPlan:
    """Choose flat / IVF-Flat / IVF-PQ, nlist, PQ size, nprobe and shards (see module doc)."""
    for name, value in (
        ("n_vectors", n_vectors),
        ("dim", dim),
        ("memory_budget_bytes", memory_budget_bytes),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < (name != "n_vectors"):
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    budget = memory_budget_bytes
    common = {"n_vectors": n_vectors, "dim": dim, "memory_budget_bytes": budget}
    if n_vectors < FLAT_MAX_VECTORS:
        size = n_vectors * dim * 4
        return IndexPlan(
            kind="flat",
            nlist=0,
            pq_m=0,
            pq_nbits=0,
            nprobe=0,
            train_points=0,
            shards=1,
            estimated_bytes=size,
            fits_budget=size <= budget,
            reason=f"{n_vectors:,} vectors < {FLAT_MAX_VECTORS:,}: an exact flat "
            f"index ({_mib(size)}) is fast and needs no training",
            **common,
        )
    nlist = nlist_for(n_vectors)
    nprobe = min(nlist, max(8, math.ceil(math.sqrt(nlist))))
    train = min(n_vectors, MAX_POINTS_PER_CENTROID * nlist)
    flat_size = ivf_flat_bytes(n_vectors, dim, nlist)
    ivf = (
        f"{n_vectors:,} vectors >= {FLAT_MAX_VECTORS:,}: IVF with nlist={nlist:,} "
        f"(~4*sqrt(n), >= {MIN_POINTS_PER_CENTROID} points per centroid)"
    )
    if flat_size <= budget:
        return IndexPlan(
            kind="ivf_flat",
            nlist=nlist,
            pq_m=0,
            pq_nbits=0,
            nprobe=nprobe,
            train_points=train,
            shards=shard_count(flat_size, budget, nlist),
            estimated_bytes=flat_size,
            fits_budget=True,
            reason=f"{ivf}; uncompressed codes ({_mib(flat_size)}) fit the budget "
            f"({_mib(budget)}), so IVF-Flat",
            **common,
        )
    candidates = [m for m in PQ_M_CANDIDATES if m < dim and dim % m == 0] or [1]
    m = next(
        (c for c in candidates if ivf_pq_bytes(n_vectors, dim, nlist, c) <= budget), candidates[-1]
    )
    size = ivf_pq_bytes(n_vectors, dim, nlist, m)
    fits = size <= budget
    # PQ codebooks are trained on the same sample; 2**nbits * 39 points at the least
    train = max(train, min(n_vectors, (1 << PQ_NBITS) * MIN_POINTS_PER_CENTROID))
    why = (
        f"{ivf}; IVF-Flat would need {_mib(flat_size)} > budget {_mib(budget)}, so IVF-PQ "
        f"with m={m} x {PQ_NBITS} bits ({m + ID_BYTES} bytes per vector, {_mib(size)})"
    )
    if not fits:
        why += "; even the smallest PQ code exceeds the budget"
    return IndexPlan(
        kind="ivf_pq",
        nlist=nlist,
        pq_m=m,
        pq_nbits=PQ_NBITS,
        nprobe=nprobe,
        train_points=train,
        shards=shard_count(size, budget, nlist),
        estimated_bytes=size,
        fits_budget=fits,
        reason=why,
        **common,
    )
