"""Systems measurements shared by every eval task: latency percentiles, throughput, peak RSS,
the memory's own tier/cache figures, and a description of the machine and package versions.

A figure that was not measured in a run is recorded as NA ("n/a"), never as 0, which would
read as a measured "no hits": the query-cache hit rate of a memory opened with the cache off,
the fast-tier hit ratio when no query probed a sealed shard.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..resources import peak_rss_bytes as peak_rss_bytes  # the eval reports' peak RSS

NA = "n/a"
PERCENTILES = (50, 95, 99)
_PACKAGES = (
    "rag_memory",
    "faiss-cpu",
    "faiss-gpu-cu12",
    "numpy",
    "torch",
    "sentence-transformers",
    "transformers",
    "ranx",
    "matplotlib",
)


def latencies(
    search_one: Callable[[int], Any], n: int, warmup: int = 2, desc: str = "latency"
) -> np.ndarray:
    """Seconds per call of `search_one(i)` for i in range(n), after `warmup` untimed calls
    (the first calls pay for lazy loading and page faults, which is not per-query cost)."""
    for i in range(min(warmup, n)):
        search_one(i)
    out = np.empty(n, dtype=np.float64)
    for i in tqdm(range(n), desc=desc, unit="q", leave=False):
        start = time.perf_counter()
        search_one(i)
        out[i] = time.perf_counter() - start
    return out


def latency_summary(seconds: Sequence[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99 and mean in milliseconds."""
    arr = np.asarray(seconds, dtype=np.float64) * 1e3
    summary = {f"p{p}_ms": float(np.percentile(arr, p)) for p in PERCENTILES}
    summary["mean_ms"] = float(arr.mean())
    summary["n"] = int(arr.size)
    return summary


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(result of fn(), wall seconds)."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def memory_figures(stats: dict[str, Any]) -> dict[str, Any]:
    """The memory's own systems figures from `mem.stats()`: bytes per tier and on disk, bytes
    read from disk shards, the query cache's hit rate (NA when the cache is off) and the
    fast-tier hit ratio (NA before any query probed a sealed shard)."""
    cache = stats.get("cache")
    hit_rate: Any = NA
    if isinstance(cache, dict):
        if "hit_rate" in cache:
            hit_rate = cache["hit_rate"]
        elif cache.get("hits") is not None and cache.get("misses") is not None:
            total = cache["hits"] + cache["misses"]
            hit_rate = cache["hits"] / total if total else NA
    return {
        "tiers": {tier: dict(v) for tier, v in stats.get("tiers", {}).items()},
        "disk_bytes": stats.get("disk_bytes", NA),
        "disk_bytes_read": stats.get("disk_bytes_read", NA),
        "cache_hit_rate": hit_rate,
        # None: the tiered index exists but no query has probed a sealed shard yet
        "fast_tier_hit_ratio": NA
        if stats.get("fast_tier_hit_ratio") is None
        else stats["fast_tier_hit_ratio"],
    }


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide the figures (absent ones omitted)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def machine() -> dict[str, Any]:
    """What the figures were measured on; speed figures only compare within one machine."""
    import faiss

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "faiss_gpus": faiss.get_num_gpus(),
        "python": platform.python_version(),
        "ram_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if hasattr(os, "sysconf")
        else NA,
    }


def ratio(a: float, b: float) -> float | str:
    """a / b, or NA when b is zero."""
    return a / b if b else NA
