"""Timing helpers shared by the benchmarks: interleaved rounds, medians, queries per second."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from rag_memory.resources import peak_rss_bytes


def interleaved_seconds(
    sides: dict[str, Callable[[np.ndarray], object]],
    queries: np.ndarray,
    batch: int,
    budget_s: float,
) -> dict[str, float]:
    """Seconds per query of each side over consecutive batches of `batch` for ~`budget_s`,
    the sides called in turn on each batch (their order rotating), so that noise slower
    than one call (a shared VM drifts by +-20% within seconds) hits every side alike."""
    spent = dict.fromkeys(sides, 0.0)
    order, done, start = list(sides), 0, time.perf_counter()
    while True:
        for i in range(0, len(queries), batch):
            q = queries[i : i + batch]
            for name in order:
                t0 = time.perf_counter()
                sides[name](q)
                spent[name] += time.perf_counter() - t0
            order.append(order.pop(0))
            done += len(q)
            if time.perf_counter() - start >= budget_s * len(sides):
                return {name: t / done for name, t in spent.items()}


def alternating_times(
    sides: dict[str, Callable[[np.ndarray], object]],
    queries: np.ndarray,
    batch: int,
    rounds: int,
    budget_s: float,
) -> dict[str, list[float]]:
    """Per side, its seconds per query in each of `rounds` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, t in interleaved_seconds(sides, queries, batch, budget_s).items():
            times[name].append(t)
    return times


def alternating_qps(
    sides: dict[str, Callable[[np.ndarray], object]],
    queries: np.ndarray,
    batch: int,
    rounds: int,
    budget_s: float,
) -> dict[str, float]:
    """Median QPS of each side over `rounds` interleaved rounds."""
    return median_qps(alternating_times(sides, queries, batch, rounds, budget_s))


def median_qps(times: dict[str, list[float]]) -> dict[str, float]:
    """Per side, queries per second of its median round (times in seconds per query)."""
    return {name: 1.0 / statistics.median(t) for name, t in times.items()}


def median_ratio(times: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over rounds of time(slow) / time(fast): each round's two sides ran interleaved,
    so the ratio of one round is free of the drift between rounds."""
    return statistics.median(s / f for s, f in zip(times[slow], times[fast], strict=True))


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean |found ∩ truth| / k over queries (rows of ids; -1 pads are never in truth)."""
    k = truth.shape[1]
    return float(
        np.mean(
            [
                len(set(f[:k]) & set(t)) / k
                for f, t in zip(found.tolist(), truth.tolist(), strict=True)
            ]
        )
    )


def peak_rss_mib() -> float:
    """This process's peak resident set in MiB (rag_memory.resources.peak_rss_bytes: VmHWM)."""
    return peak_rss_bytes() / 2**20
