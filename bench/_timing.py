"""Timing helpers shared by the benchmarks: alternating rounds, median, queries per second."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import numpy as np


def seconds_per_query(search: Callable[[np.ndarray], object], queries: np.ndarray, batch: int,
                      budget_s: float) -> float:
    """Seconds per query of `search` over consecutive batches of `batch`, for ~`budget_s`."""
    done, start = 0, time.perf_counter()
    while True:
        for i in range(0, len(queries), batch):
            search(queries[i:i + batch])
            done += len(queries[i:i + batch])
            if time.perf_counter() - start >= budget_s:
                return (time.perf_counter() - start) / done


def alternating_qps(sides: dict[str, Callable[[np.ndarray], object]], queries: np.ndarray,
                    batch: int, rounds: int, budget_s: float) -> dict[str, float]:
    """Median QPS of each side over `rounds` rounds run in turn (A, B, A, B, ...), so machine
    noise hits every side alike."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, search in sides.items():
            times[name].append(seconds_per_query(search, queries, batch, budget_s))
    return {name: 1.0 / statistics.median(t) for name, t in times.items()}


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean |found ∩ truth| / k over queries (rows of ids; -1 pads are never in truth)."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found.tolist(),
                                                                       truth.tolist())]))


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that over from
    the parent through fork and exec, so a child would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
