"""Query cache on SciFact: latency of a hit vs a miss, and a Zipf query stream with and without it.

One run, one machine, same memory contents for every figure:
  * miss: the first `Memory.search(text, k=10)` of a question (embed + search + hydrate + store);
    hit: the same call again (text -> embedding and query -> results both answer). Interleaved
    per question so machine noise hits both alike; medians reported, with their ratio.
  * stream: --stream questions drawn from the SciFact train claims with a Zipf law over a
    seeded random ranking (P(rank r) ~ r^-s, s = 1.1, as query logs follow), one search per
    question, through a memory without a cache and one with the default cache (cold start).

    python bench/cache_latency.py [--queries 200] [--stream 2000] [--out results/cache]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _data import scifact_or_exit
from _report import print_and_save

from rag_memory import CacheConfig, Memory
from rag_memory.embed import Embedder

K = 10
ZIPF_S = 1.1
SEED = 6


def build(directory: Path, data: dict, embedder: Embedder, cache: CacheConfig | None) -> Memory:
    mem = Memory.create(directory, embedder=embedder, cache=cache)
    mem.add(data["texts"], ids=data["ids"], vectors=data["vectors"])
    return mem


def timed(fn, *args, **kwargs) -> tuple[float, list]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def hit_vs_miss(mem: Memory, questions: list[str]) -> dict:
    """Ask each question twice; SciFact repeats a few claims, whose first ask is a hit too."""
    miss, hit = [], []
    for q in questions:
        for _ in range(2):
            seconds, hits = timed(mem.search, q, k=K)
            (hit if hits[0].cached else miss).append(seconds)
    m, h = statistics.median(miss), statistics.median(hit)
    return {
        "miss_ms": 1e3 * m,
        "hit_ms": 1e3 * h,
        "ratio": m / h,
        "miss_p90_ms": 1e3 * float(np.percentile(miss, 90)),
        "hit_p90_ms": 1e3 * float(np.percentile(hit, 90)),
    }


def zipf_stream(n_queries: int, length: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    ranking = rng.permutation(n_queries)  # which claim is the most asked, second, ...
    p = 1.0 / np.arange(1, n_queries + 1) ** ZIPF_S
    return ranking[rng.choice(n_queries, size=length, p=p / p.sum())]


def run_stream(mem: Memory, questions: list[str], stream: np.ndarray) -> float:
    start = time.perf_counter()
    for i in stream:
        mem.search(questions[i], k=K)
    return len(stream) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200, help="questions for hit vs miss")
    parser.add_argument("--stream", type=int, default=2000, help="length of the Zipf stream")
    parser.add_argument("--out", type=Path, default=Path("results/cache"))
    args = parser.parse_args()
    embedder = Embedder()
    data = scifact_or_exit(embedder)
    questions = data["queries"]
    embedder.encode(questions[:8])  # load the model and warm it up outside the timings
    stream = zipf_stream(len(questions), args.stream)
    with tempfile.TemporaryDirectory() as tmp:
        with build(Path(tmp) / "cached", data, embedder, CacheConfig()) as mem:
            latency = hit_vs_miss(mem, questions[: args.queries])
        with build(Path(tmp) / "plain", data, embedder, None) as mem:
            qps_without = run_stream(mem, questions, stream)
        with build(Path(tmp) / "stream", data, embedder, CacheConfig()) as mem:
            qps_with = run_stream(mem, questions, stream)
            stream_stats = mem.stats()["cache"]
    result = {
        "k": K,
        "corpus": len(data["ids"]),
        **latency,
        "zipf_s": ZIPF_S,
        "stream": args.stream,
        "distinct_in_stream": int(len(np.unique(stream))),
        "qps_without_cache": qps_without,
        "qps_with_cache": qps_with,
        "stream_speedup": qps_with / qps_without,
        "stream_cache": stream_stats,
    }
    rows = [
        ("corpus slots", f"{len(data['ids'])}"),
        (
            f"miss latency, median (p90), {args.queries} questions",
            f"{latency['miss_ms']:.2f} ms ({latency['miss_p90_ms']:.2f})",
        ),
        (
            "hit latency, median (p90)",
            f"{latency['hit_ms'] * 1e3:.1f} µs ({latency['hit_p90_ms'] * 1e3:.1f})",
        ),
        ("miss / hit", f"{latency['ratio']:.0f}x"),
        (
            f"Zipf stream s={ZIPF_S}: {args.stream} questions, "
            f"{result['distinct_in_stream']} distinct",
            "",
        ),
        ("  throughput without cache", f"{qps_without:.0f} q/s"),
        ("  throughput with cache (cold start)", f"{qps_with:.0f} q/s"),
        (
            "  speed-up / hit rate",
            f"{result['stream_speedup']:.1f}x / {stream_stats['hit_rate']:.3f}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    table = "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
    print_and_save(args.out, "latency", result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
