"""`eval systems`: build time, recall@k vs throughput, latency and bytes per tier of the memory
on seeded synthetic vectors (no embedding cost), next to exact FAISS and FAISS IVF-Flat.

Exact search at 1M x 384 costs ~0.25 s per single query on 2 cores, so the number of queries
is a parameter recorded with the results: `queries` (batch, for recall and QPS) and
`latency_queries` (timed one at a time) are kept small enough for a run of minutes.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..datasets.synthetic import MixtureSpec, base_vectors, query_vectors
from ..errors import InvalidInputError
from ..index.config import IndexConfig
from ..memory import Memory
from . import measure
from .sweep import (
    FlatSystem,
    IvfFlatSystem,
    MemorySystem,
    default_nprobes,
    knee,
    sweep,
    sweep_nlist,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemsConfig:
    """Everything that decides the figures of one `eval systems` run (recorded in results.json)."""

    out: str  # results folder
    n: int = 1_000_000  # database vectors
    dim: int = 384
    clusters: int = 1000  # Gaussian-mixture components
    spread: float = 1.0  # mixture noise (see synthetic.MixtureSpec)
    seed: int = 0
    queries: int = 500  # batch queries for recall and QPS (~1 min of exact search at 1M)
    latency_queries: int = 100  # queries timed one at a time, per system
    k: int = 10  # recall@k
    add_batch: int = 20_000  # vectors per mem.add call
    nlist: int | None = None  # IVF lists; None = sweep_nlist(n)
    nprobes: tuple[int, ...] = field(default_factory=tuple)  # () = default_nprobes(nlist)
    recall_target: float = 0.95  # the IVF point timed for latency: fastest at this recall
    memory: str | None = None  # keep the built memory here (reused if it holds n slots)

    def __post_init__(self) -> None:
        for name in ("n", "dim", "queries", "latency_queries", "k", "add_batch"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.k > self.n:
            raise InvalidInputError(f"k={self.k} exceeds n={self.n}")


def _build_memory(
    path: Path, vectors: np.ndarray, batch: int, nlist: int
) -> tuple[Memory, float | str]:
    """Open the memory at `path`, building it from `vectors` unless it already holds them.
    Its tiered index gets the comparison IVF's nlist, and is compacted (sealed) at the end."""
    if (path / "manifest.json").exists():
        mem = Memory.open(path, read_only=True)
        if len(mem) != len(vectors) or mem.manifest.dim != vectors.shape[1]:
            mem.close()
            raise InvalidInputError(
                f"{path} holds {len(mem)} slots, not this run's "
                f"{len(vectors)} x {vectors.shape[1]}; use another --memory"
            )
        return mem, measure.NA

    def build() -> None:
        index = IndexConfig(
            kind="ivf_flat",
            nlist=nlist,
            expected_vectors=len(vectors),
            seal_threshold=max(100_000, len(vectors) // 4),
        )
        with Memory.create(path, dim=vectors.shape[1], index=index, cache=None) as mem:
            for start in tqdm(range(0, len(vectors), batch), desc="building memory", unit="batch"):
                rows = range(start, min(start + batch, len(vectors)))
                mem.add(
                    [f"v{i}" for i in rows],
                    ids=[str(i) for i in rows],
                    vectors=vectors[rows.start : rows.stop],
                )
            mem.compact()

    _, seconds = measure.timed(build)
    return Memory.open(path, read_only=True), seconds


def run_systems(config: SystemsConfig) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the benchmark; returns (results, {system: single-query latencies in seconds})."""
    spec = MixtureSpec(config.dim, config.clusters, config.spread, config.seed)
    vectors, gen_s = measure.timed(lambda: base_vectors(spec, config.n))
    queries = query_vectors(spec, config.queries)
    nlist = config.nlist or sweep_nlist(config.n)
    nprobes = list(config.nprobes) or default_nprobes(nlist)

    scratch = None
    if config.memory is None:  # inside --out, so it lands on the disk the user chose
        Path(config.out).mkdir(parents=True, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix="memory-", dir=config.out)
    mem_path = Path(config.memory or scratch)  # type: ignore[arg-type]
    try:
        mem, build_s = _build_memory(mem_path, vectors, config.add_batch, nlist)
        with mem:
            flat, flat_build_s = measure.timed(lambda: FlatSystem(vectors))
            truth = flat.search(queries, config.k)
            ivf = IvfFlatSystem(vectors, nlist, nprobes, config.seed)
            memsys = MemorySystem(mem, nprobes)
            points = sweep([memsys, flat, ivf], queries, truth, config.k)
            ivf_point = knee(points, ivf.name, config.recall_target)
            n_lat = min(config.latency_queries, config.queries)

            def one(system: Any, value: Any) -> Any:
                return lambda i: system.search(queries[i : i + 1], config.k, value)

            mem_point = knee(points, memsys.name, config.recall_target)
            lat = {
                "memory": measure.latencies(
                    one(memsys, mem_point.value if mem_point else None),
                    n_lat,
                    desc="memory latency",
                ),
                "exact_faiss": measure.latencies(one(flat, None), n_lat, desc="exact latency"),
            }
            if ivf_point is not None:
                lat[f"faiss_ivf_flat nprobe={ivf_point.value}"] = measure.latencies(
                    one(ivf, ivf_point.value), n_lat, desc="ivf latency"
                )
            figures = measure.memory_figures(mem.stats())
            bytes_by_system = {
                "memory": memsys.nbytes,
                "exact_faiss": flat.nbytes,
                "faiss_ivf_flat": ivf.nbytes,
            }
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    by_name = {p.system: p for p in points if p.knob is None}
    # the memory's point: where its nprobe curve reaches the recall target (else its last)
    by_name["memory"] = mem_point or [p for p in points if p.system == "memory"][-1]
    results = {
        "task": "systems",
        "config": {**asdict(config), "nlist": nlist, "nprobes": nprobes},
        "data": {
            "kind": "gaussian_mixture",
            **asdict(spec),
            "n": config.n,
            "queries": config.queries,
            "latency_queries": n_lat,
            "generate_seconds": gen_s,
        },
        "build": {
            "memory_seconds": build_s,
            "memory_vectors_per_second": config.n / build_s
            if isinstance(build_s, float)
            else measure.NA,
            "exact_faiss_seconds": flat_build_s,
            "ivf_train_seconds": ivf.train_seconds,
            "ivf_add_seconds": ivf.add_seconds,
        },
        "sweep": [asdict(p) for p in points],
        "latency": {name: measure.latency_summary(v) for name, v in lat.items()},
        "ratios_memory_over_exact": {
            "batch_qps": measure.ratio(by_name["memory"].qps, by_name["exact_faiss"].qps),
            "latency_p50": measure.ratio(np.median(lat["memory"]), np.median(lat["exact_faiss"])),
            "recall_difference": by_name["memory"].recall - by_name["exact_faiss"].recall,
            "memory_nprobe": by_name["memory"].value,
        },
        "bytes": bytes_by_system,
        "peak_rss_bytes": measure.peak_rss_bytes(),
        **figures,
    }
    return results, lat
