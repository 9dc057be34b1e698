"""Memory.search by vector vs raw FAISS on the same vectors, side by side in one run.

Both sides search the same exact inner-product index contents with the same query batches;
Memory.search also merges shards, and returns Hits with id, text and metadata read from SQLite,
so the ratio is the full cost of the library over FAISS. Rounds alternate between the two
sides so that machine noise hits both alike; the median round is reported.

    python bench/search_overhead.py            # n = 5,183 (SciFact's size) and 100,000
    python bench/search_overhead.py --sizes 20000 --rounds 9
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from rag_memory import Memory

K = 10
DIM = 384


def clustered_unit_vectors(n: int, dim: int, seed: int, clusters: int = 256) -> np.ndarray:
    """Gaussian-mixture vectors on the unit sphere (closer to real embeddings than uniform)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def time_per_query(search, queries: np.ndarray, batch: int, budget_s: float) -> float:
    """Seconds per query of `search` over batches of `batch` queries, for about `budget_s`."""
    done, start = 0, time.perf_counter()
    while True:
        for i in range(0, len(queries), batch):
            search(queries[i:i + batch])
            done += len(queries[i:i + batch])
            if time.perf_counter() - start >= budget_s:
                return (time.perf_counter() - start) / done


def bench_size(n: int, rounds: int, budget_s: float, workdir: Path) -> list[dict]:
    vectors = clustered_unit_vectors(n, DIM, seed=0)
    queries = clustered_unit_vectors(640, DIM, seed=1)
    raw = faiss.IndexFlatIP(DIM)
    raw.add(vectors)
    with Memory.create(workdir / f"bench-{n}", dim=DIM) as mem:
        for start in range(0, n, 10_000):
            chunk = range(start, min(n, start + 10_000))
            mem.add([f"slot {i}" for i in chunk], ids=[f"id{i}" for i in chunk],
                    metadata=[{"n": i} for i in chunk], vectors=vectors[start:start + 10_000])
        # same answers first: the comparison is only fair if both do the same search
        _, rows = raw.search(queries[:64], K)
        assert [[h.id for h in hits] for hits in mem.search(queries[:64], k=K)] == \
            [[f"id{r}" for r in row] for row in rows]
        out = []
        for batch in (1, 64):
            raw_t, mem_t = [], []
            for _ in range(rounds):
                raw_t.append(time_per_query(lambda q: raw.search(q, K), queries, batch, budget_s))
                mem_t.append(time_per_query(lambda q: mem.search(q, k=K), queries, batch, budget_s))
            raw_s, mem_s = statistics.median(raw_t), statistics.median(mem_t)
            out.append({"n": n, "batch": batch, "faiss_qps": 1 / raw_s, "memory_qps": 1 / mem_s,
                        "overhead_ratio": mem_s / raw_s})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5183, 100_000])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per side")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per timed round")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            rows += bench_size(n, args.rounds, args.budget, Path(tmp))
    print(f"exact search, dim {DIM}, k {K}, faiss {faiss.__version__}, "
          f"{faiss.omp_get_max_threads()} threads")
    print(f"{'vectors':>9} {'batch':>5} {'faiss q/s':>10} {'memory q/s':>11} {'overhead':>9}")
    for r in rows:
        print(f"{r['n']:>9} {r['batch']:>5} {r['faiss_qps']:>10.0f} {r['memory_qps']:>11.0f} "
              f"{r['overhead_ratio']:>8.3f}x")
    worst = max(r["overhead_ratio"] for r in rows if r["batch"] == 64)
    print(f"worst overhead at batch 64: {worst:.3f}x (target <= 1.10): "
          f"{'PASS' if worst <= 1.10 else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if worst <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
