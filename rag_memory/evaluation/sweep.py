"""Recall-vs-throughput sweeps over ANN search knobs, as ann-benchmarks draws them.

Each system offers `knob_values()`; one point is measured per value: recall@k against exact
ground truth (FAISS's own `knn_intersection_measure`) and batch queries per second. A system
without a knob yields a single point. The memory's knob is its tiered index's `nprobe`
(sealed shards); `MemorySystem.knob_values` returns the same values as the IVF curve and the
memory becomes a curve in the same plot without other changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import faiss
import numpy as np
from faiss.contrib.evaluation import knn_intersection_measure
from tqdm.auto import tqdm

from ..index.plan import nlist_for
from ..memory import Memory
from ..types import Hit

logger = logging.getLogger(__name__)

SWEEP_MAX_NLIST = 1024  # see sweep_nlist


@dataclass(frozen=True)
class SweepPoint:
    """One measured operating point of one system."""

    system: str
    knob: str | None
    value: Any
    recall: float  # recall@k: |found ∩ true top-k| / k, averaged over queries
    qps: float  # queries per second, all queries searched as one batch
    seconds: float


class SweepSystem(Protocol):
    """A searchable index over row numbers 0..n-1 of the benchmark vectors."""

    name: str
    knob: str | None

    def knob_values(self) -> Sequence[Any]: ...

    def search(self, queries: np.ndarray, k: int, value: Any) -> np.ndarray:
        """(nq, k) int64 row numbers, -1 where fewer than k were found."""

    @property
    def nbytes(self) -> int: ...


def sweep_nlist(n: int, cap: int = SWEEP_MAX_NLIST) -> int:
    """IVF list count of a sweep: the memory's own choice for n vectors (`plan.nlist_for`:
    ~4 x sqrt(n), >= 39 training points per list), at most `cap`.

    The cap is the sweep's, not the planner's: the sweep trains k-means twice (the memory's
    router and the comparison IVF), and its cost grows with nlist, so on 2 cores nlist_for's
    16,384 lists at 1M vectors would take the better part of an hour where 1,024 take minutes.
    The published 1M sweep ran at nlist 1,024 (`eval/systems.sh`); pass `nlist` explicitly
    (`--nlist`) to sweep another value.
    """
    return min(nlist_for(n), cap)


def default_nprobes(nlist: int) -> list[int]:
    """1, 2, 4, ... up to nlist / 4 (beyond that IVF is slower than exact search)."""
    values, p = [], 1
    while p <= max(1, nlist // 4):
        values.append(p)
        p *= 2
    return values


class FlatSystem:
    """Exact search (IndexFlatIP): the ground truth and the speed anchor."""

    name = "exact_faiss"
    knob: str | None = None

    def __init__(self, vectors: np.ndarray) -> None:
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)

    def knob_values(self) -> Sequence[Any]:
        return [None]

    def search(self, queries: np.ndarray, k: int, value: Any = None) -> np.ndarray:
        return self.index.search(queries, k)[1]

    @property
    def nbytes(self) -> int:
        return self.index.ntotal * self.index.d * 4


class IvfFlatSystem:
    """Plain FAISS IVF-Flat, the comparison curve: `nprobe` trades recall for speed."""

    name = "faiss_ivf_flat"
    knob: str | None = "nprobe"

    def __init__(self, vectors: np.ndarray, nlist: int, nprobes: Sequence[int], seed: int) -> None:
        d = vectors.shape[1]
        self.nlist, self.nprobes = nlist, list(nprobes)
        self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        # FAISS warns below 39 training points per list; 50 leaves a margin at bounded cost.
        n_train = min(len(vectors), 50 * nlist)
        sample = np.random.default_rng(seed).choice(len(vectors), n_train, replace=False)
        self.index.cp.seed = seed
        start = time.perf_counter()
        self.index.train(vectors[np.sort(sample)])
        self.train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        self.index.add(vectors)
        self.add_seconds = time.perf_counter() - start

    def knob_values(self) -> Sequence[Any]:
        return [p for p in self.nprobes if p <= self.nlist]

    def search(self, queries: np.ndarray, k: int, value: Any = 1) -> np.ndarray:
        params = faiss.SearchParametersIVF()
        params.nprobe = int(value)
        return self.index.search(queries, k, params=params)[1]

    @property
    def nbytes(self) -> int:
        # vectors + ids in the inverted lists, plus the coarse centroids
        return self.index.ntotal * (self.index.d * 4 + 8) + self.nlist * self.index.d * 4


class MemorySystem:
    """The memory under test; benchmark row i is stored under slot id str(i)."""

    name = "memory"

    def __init__(self, mem: Memory, nprobes: Sequence[int]) -> None:
        self.mem = mem
        # nprobe is a knob once sealed shards exist; an all-growing memory is exact.
        nlist = mem.stats()["index"]["nlist_chosen"]
        self.knob: str | None = "nprobe" if nlist else None
        self.nprobes = [p for p in nprobes if p <= nlist] if nlist else [None]

    def knob_values(self) -> Sequence[Any]:
        return self.nprobes

    def search(self, queries: np.ndarray, k: int, value: Any = None) -> np.ndarray:
        # a 2-D batch: one hit list per query (the overloads cannot tell 1-D from 2-D arrays)
        hits = cast("list[list[Hit]]", self.mem.search(queries, k=k, nprobe=value, cache=False))
        out = np.full((len(queries), k), -1, dtype=np.int64)
        for row, row_hits in enumerate(hits):
            out[row, : len(row_hits)] = [int(h.id) for h in row_hits]
        return out

    @property
    def nbytes(self) -> int:
        return sum(t["bytes"] for t in self.mem.stats()["tiers"].values())


def sweep(
    systems: Sequence[SweepSystem], queries: np.ndarray, truth: np.ndarray, k: int
) -> list[SweepPoint]:
    """Measure every (system, knob value); `truth` is the exact (nq, >=k) top-k row numbers."""
    jobs = [(s, v) for s in systems for v in s.knob_values()]
    points = []
    for system, value in tqdm(jobs, desc="sweep", unit="point"):
        system.search(queries[:2], k, value)  # warm-up
        start = time.perf_counter()
        found = system.search(queries, k, value)
        seconds = time.perf_counter() - start
        recall = float(knn_intersection_measure(found[:, :k], truth[:, :k]))
        points.append(
            SweepPoint(system.name, system.knob, value, recall, len(queries) / seconds, seconds)
        )
        logger.info(
            "%s %s=%s: recall@%d %.4f, %.1f QPS",
            system.name,
            system.knob,
            value,
            k,
            recall,
            len(queries) / seconds,
        )
    return points


def knee(points: Sequence[SweepPoint], system: str, target: float) -> SweepPoint | None:
    """The fastest point of `system` whose recall reaches `target` (else its best-recall point)."""
    own = [p for p in points if p.system == system]
    if not own:
        return None
    good = [p for p in own if p.recall >= target]
    return max(good, key=lambda p: p.qps) if good else max(own, key=lambda p: p.recall)
