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
- IVF with half-precision codes (2 * dim bytes + an 8-byte id per vector, plus the centroids)
  when they fit the budget: ours, not autofaiss' (which takes IVF-Flat then), because a probe
  is a memory-bound scan that fp16 halves at the same recall (measured in `codecs.py`);
  otherwise IVF-PQ with 8-bit codes and the largest number of sub-quantizers m from autofaiss'
  list (256, 128, 64, 48, 32, 24, 16, 8, 4) that divides dim and fits the budget. IVF-Flat is
  there for a config that names it.

Two choices are ours, not autofaiss' (it tunes nprobe by timing a built index, and has no
shards): `nprobe` starts at ceil(sqrt(nlist)), at least 8 (a common starting point, to be tuned
on data), and the router trains on a uniform random sample of `train_points` vectors.

`choose_router` turns a plan and an `IndexConfig` into the settings the first seal trains the
router with: this module is the one home of the nlist and training-size rules.

`IndexPlan` is consumed by the tiered index: its fields and their meaning are stable.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import InvalidInputError
from ..validation import is_int, json_object_problem
from .base import FLAT
from .codecs import IVF_FP16, IVF_PQ, PQ_NBITS, SEALED_KINDS
from .config import IndexConfig

FLAT_MAX_VECTORS = 10_000  # autofaiss quantization_threshold
MIN_POINTS_PER_CENTROID = 39  # FAISS ClusteringParameters.min_points_per_centroid
MAX_POINTS_PER_CENTROID = 256  # FAISS subsamples the training set beyond this
PQ_M_CANDIDATES = (256, 128, 64, 48, 32, 24, 16, 8, 4)  # autofaiss get_optimal_quantization
# The PQ codebook trains on this many points per sub-quantizer centroid (16,384 rows at 8
# bits), not FAISS's 256: training cost is linear in the points, and with the exact re-ranking
# every IVF-PQ search does the recall does not move. Measured on 50,000 x 384 of the peer
# benchmark's data (nlist 512, nprobe 32, k 10): recall@10 0.997 (256) vs 0.998 (64) at
# refine_factor 40 and 0.934 vs 0.926 at 10, the seal 1.8x faster. FAISS warns below 39.
PQ_TRAIN_POINTS_PER_CENTROID = 64
PQ_MIN_TRAIN_VECTORS = 1 << PQ_NBITS  # k-means needs a training point per PQ centroid
ID_BYTES = 8  # an int64 id per vector in FAISS inverted lists
UNLIMITED_BYTES = 1 << 60  # "no RAM budget"
GROUPS_PER_PARTITION = 16  # default partition groups: nlist // 16 (a shard per group)
KINDS = (FLAT, *SEALED_KINDS)

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

    kind: str  # "flat" or one of codecs.SEALED_KINDS
    n_vectors: int  # vectors the plan was made for
    dim: int  # vector dimension
    memory_budget_bytes: int  # the budget the plan was asked to fit
    nlist: int  # IVF coarse centroids (0 for flat)
    pq_m: int  # PQ sub-quantizers, bytes per code at 8 bits (0 unless ivf_pq)
    pq_nbits: int  # bits per PQ sub-code (0 unless ivf_pq)
    nprobe: int  # default inverted lists probed per query (0 for flat)
    train_points: int  # vectors to sample for k-means / PQ training (0 for flat)
    estimated_bytes: int  # codes + ids + centroids (+ PQ codebooks)
    fits_budget: bool  # False when even the smallest plan exceeds the budget
    reason: str  # why this plan, in a sentence a user can read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> IndexPlan:
        """Strict inverse of `to_dict`: unknown or missing keys and wrong types are errors."""
        wanted = {"str": str, "bool": bool}
        types = {f.name: wanted.get(str(f.type), int) for f in fields(cls)}
        problem = json_object_problem(data, types, "index plan")
        if problem is not None:
            raise InvalidInputError(problem)
        if data["kind"] not in KINDS:
            raise InvalidInputError(f"index plan kind must be one of {KINDS}")
        return cls(**data)


@dataclass(frozen=True)
class RouterChoice:
    """How the first seal trains the router: the plan for the expected size, with what
    `IndexConfig` fixes by hand taking precedence."""

    kind: str  # one of codecs.SEALED_KINDS (sealed shards are always IVF)
    nlist: int
    pq_m: int
    groups: int  # partition groups, one sealed shard per group and seal
    train_points: int  # rows of the random training sample
    reason: str


def parse_bytes(text: str | int) -> int:
    """'512MiB', '2GB', '1g', '1048576' -> bytes (binary units for *iB, decimal otherwise)."""
    if is_int(text):
        value = int(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
        if match is None or match.group(2).lower() not in _UNITS:
            raise InvalidInputError(f"not a byte size: {text!r} (e.g. 512MiB, 2GB)")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value <= 0:
        raise InvalidInputError(f"a byte size must be positive, got {text!r}")
    return value


def max_nlist(n_train: int) -> int:
    """The most partitions `n_train` points can train: 39 points per centroid at least
    (FAISS ClusteringParameters.min_points_per_centroid; it warns below)."""
    return max(1, n_train // MIN_POINTS_PER_CENTROID)


def nlist_for(n_vectors: int) -> int:
    """autofaiss' first choice of IVF centroids, clamped to >= 39 training points per centroid."""
    if n_vectors < 1_000_000:
        nlist = 2 ** round(math.log2(4 * math.sqrt(max(1, n_vectors))))
    elif n_vectors < 10_000_000:
        nlist = 16_384
    elif n_vectors < 300_000_000:
        nlist = 65_536
    else:
        nlist = 2**17
    cap = max_nlist(n_vectors)
    if nlist > cap:  # keep a power of two, as autofaiss' choices are
        nlist = 2 ** int(math.log2(cap))
    return nlist


def train_points_for(n_vectors: int, nlist: int, kind: str) -> int:
    """Training rows: MAX_POINTS_PER_CENTROID per centroid (what FAISS k-means subsamples to),
    and for IVF-PQ as many per PQ sub-centroid (2**PQ_NBITS of them), never more than n."""
    centroids = max(nlist, 1 << PQ_NBITS) if kind == IVF_PQ else nlist
    return min(n_vectors, MAX_POINTS_PER_CENTROID * centroids)


def ivf_fp16_bytes(n_vectors: int, dim: int, nlist: int) -> int:
    return n_vectors * (2 * dim + ID_BYTES) + nlist * dim * 4


def ivf_pq_bytes(n_vectors: int, dim: int, nlist: int, m: int, nbits: int = PQ_NBITS) -> int:
    codebooks = dim * (1 << nbits) * 4  # m sub-codebooks of 2**nbits centroids of dim/m floats
    return n_vectors * (m * nbits // 8 + ID_BYTES) + nlist * dim * 4 + codebooks


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def choose_index(n_vectors: int, dim: int, memory_budget_bytes: int) -> IndexPlan:
    """Choose flat / IVF-fp16 / IVF-PQ, nlist, PQ size, nprobe and training size (module doc)."""
    for name, value in (
        ("n_vectors", n_vectors),
        ("dim", dim),
        ("memory_budget_bytes", memory_budget_bytes),
    ):
        if not is_int(value) or value < (name != "n_vectors"):
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
            estimated_bytes=size,
            fits_budget=size <= budget,
            reason=f"{n_vectors:,} vectors < {FLAT_MAX_VECTORS:,}: an exact flat "
            f"index ({_mib(size)}) is fast and needs no training",
            **common,
        )
    nlist = nlist_for(n_vectors)
    nprobe = min(nlist, max(8, math.ceil(math.sqrt(nlist))))
    train = train_points_for(n_vectors, nlist, IVF_FP16)
    fp16_size = ivf_fp16_bytes(n_vectors, dim, nlist)
    ivf = (
        f"{n_vectors:,} vectors >= {FLAT_MAX_VECTORS:,}: IVF with nlist={nlist:,} "
        f"(~4*sqrt(n), >= {MIN_POINTS_PER_CENTROID} points per centroid)"
    )
    if fp16_size <= budget:
        return IndexPlan(
            kind=IVF_FP16,
            nlist=nlist,
            pq_m=0,
            pq_nbits=0,
            nprobe=nprobe,
            train_points=train,
            estimated_bytes=fp16_size,
            fits_budget=True,
            reason=f"{ivf}; half-precision codes ({_mib(fp16_size)}) fit the budget "
            f"({_mib(budget)}), so IVF-fp16",
            **common,
        )
    candidates = [m for m in PQ_M_CANDIDATES if m < dim and dim % m == 0] or [1]
    m = next(
        (c for c in candidates if ivf_pq_bytes(n_vectors, dim, nlist, c) <= budget), candidates[-1]
    )
    size = ivf_pq_bytes(n_vectors, dim, nlist, m)
    fits = size <= budget
    train = train_points_for(n_vectors, nlist, IVF_PQ)  # PQ codebooks train on it too
    why = (
        f"{ivf}; IVF-fp16 would need {_mib(fp16_size)} > budget {_mib(budget)}, so IVF-PQ "
        f"with m={m} x {PQ_NBITS} bits ({m + ID_BYTES} bytes per vector, {_mib(size)})"
    )
    if not fits:
        why += "; even the smallest PQ code exceeds the budget"
    return IndexPlan(
        kind=IVF_PQ,
        nlist=nlist,
        pq_m=m,
        pq_nbits=PQ_NBITS,
        nprobe=nprobe,
        train_points=train,
        estimated_bytes=size,
        fits_budget=fits,
        reason=why,
        **common,
    )


def min_train_vectors(kind: str) -> int:
    """Vectors the first seal needs to train a router of `kind`: FAISS k-means refuses fewer
    training points than centroids, and a PQ codebook has 2**PQ_NBITS centroids per
    sub-quantizer. IVF-Flat and IVF-fp16 train on any number (nlist is capped by
    `max_nlist`), and "auto" picks IVF-fp16 for a first seal smaller than that
    (`choose_router`)."""
    return PQ_MIN_TRAIN_VECTORS if kind == IVF_PQ else 1


def default_pq_m(dim: int) -> int:
    """Sub-quantizers when IndexConfig.pq_m is None: about dim // 8 (48 at dim 384), the
    largest that divides dim (FAISS ProductQuantizer requires dim % M == 0)."""
    return next(m for m in range(max(1, dim // 8), 0, -1) if dim % m == 0)


def check_trainable(config: IndexConfig, dim: int) -> None:
    """Refuse at create a config that FAISS could never train, rather than at the first seal
    (where it would fail again at every retry)."""
    if config.kind == IVF_PQ or (config.kind == "auto" and config.pq_m is not None):
        m = config.pq_m or default_pq_m(dim)
        if m > dim or dim % m:
            raise InvalidInputError(
                f"IndexConfig.pq_m={m} must divide dim {dim} (a PQ sub-quantizer codes "
                f"dim / pq_m dimensions); divisors: "
                f"{[d for d in PQ_M_CANDIDATES if dim % d == 0 and d <= dim]}"
            )
    if config.seal_threshold < min_train_vectors(config.kind):
        raise InvalidInputError(
            f"IndexConfig.seal_threshold={config.seal_threshold} is too small to train IVF-PQ "
            f"(its codebook needs >= {PQ_MIN_TRAIN_VECTORS} vectors per seal)"
        )


def choose_router(
    n_sealing: int, dim: int, config: IndexConfig, ram_bytes: int | None
) -> RouterChoice:
    """The router the first seal trains on its `n_sealing` vectors: kind, nlist and PQ size of
    `choose_index` for the expected size (`config.expected_vectors` when larger) within the
    RAM budget, unless `config` fixes them; a plan of "flat" (a small memory) becomes
    IVF-fp16. nlist never exceeds what the vectors at hand can train."""
    expected = max(n_sealing, config.expected_vectors or 0)
    plan = choose_index(expected, dim, ram_bytes or UNLIMITED_BYTES)
    auto = config.kind == "auto"
    pq = plan.kind == IVF_PQ and n_sealing >= PQ_MIN_TRAIN_VECTORS
    kind = (IVF_PQ if pq else IVF_FP16) if auto else config.kind
    nlist = min(config.nlist or plan.nlist or nlist_for(expected), max_nlist(n_sealing))
    train = train_points_for(n_sealing, nlist, kind)
    reason = (
        f"{kind} ({'auto' if auto else 'set in IndexConfig'}); plan for {expected:,} vectors: "
        f"{plan.reason}"
    )
    return RouterChoice(
        kind=kind,
        nlist=nlist,
        pq_m=config.pq_m or plan.pq_m or default_pq_m(dim),
        groups=max(1, min(config.shard_groups or nlist // GROUPS_PER_PARTITION, nlist)),
        train_points=train,
        reason=reason,
    )
