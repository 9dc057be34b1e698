"""The tiered, sharded memory vs one plain FAISS IVF-Flat index, same vectors, same partitions.

Both use the same centroids (the memory's trained router) and the same nprobe, so recall is
the same and the ratio isolates the cost of sharding, routing, merging and reading the hits'
text from SQLite. Every sealed shard is in RAM (no budget). Prints recall@10 and batch-64 QPS
side by side and the ratio (target >= 0.90).

    python bench/tiered_vs_ivf.py                 # 1,000,000 x 384, nlist 1024, nprobe 16
    python bench/tiered_vs_ivf.py --n 200000 --rounds 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternating_qps, recall_at_k  # noqa: E402

from rag_memory import Memory  # noqa: E402
from rag_memory.datasets.synthetic import MixtureSpec, iter_base, query_vectors  # noqa: E402
from rag_memory.index.config import IndexConfig  # noqa: E402

K = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--groups", type=int, default=32, help="partition groups (shards)")
    parser.add_argument("--queries", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per timed round")
    parser.add_argument("--spread", type=float, default=1.0)
    args = parser.parse_args()
    spec = MixtureSpec(spread=args.spread)
    queries = query_vectors(spec, args.queries)
    config = IndexConfig(
        kind="ivf_flat",
        nlist=args.nlist,
        nprobe=args.nprobe,
        shard_groups=args.groups,
        seal_threshold=args.n + 1,
        rebalance_every=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        mem = Memory.create(Path(tmp) / "m", dim=spec.dim, index=config, cache=None)
        start = 0
        for chunk in iter_base(spec, args.n):
            ids = [str(i) for i in range(start, start + len(chunk))]
            mem.add(ids, ids=ids, vectors=chunk)
            start += len(chunk)
        t1 = time.perf_counter()
        mem.compact()  # one seal: train the router, write the shards
        t2 = time.perf_counter()
        plain = mem.index.router.empty_index()  # same centroids, empty lists
        start = 0
        for chunk in iter_base(spec, args.n):
            plain.add_with_ids(chunk, np.arange(start + 1, start + len(chunk) + 1))  # addr = i+1
            start += len(chunk)
        plain.nprobe = args.nprobe
        t3 = time.perf_counter()
        exact = faiss.IndexFlatIP(spec.dim)
        for chunk in iter_base(spec, args.n):
            exact.add(chunk)
        truth = exact.search(queries, K)[1] + 1
        del exact
        found_plain = plain.search(queries, K)[1]
        found_mem = np.array(
            [
                [h.address for h in hits] + [-1] * (K - len(hits))
                for hits in mem.search(queries, k=K)
            ]
        )
        qps = alternating_qps(
            {
                "faiss IVF-Flat": lambda q: plain.search(q, K),
                "memory": lambda q: mem.search(q, k=K),
            },
            queries,
            64,
            args.rounds,
            args.budget,
        )
        stats = mem.stats()
        mem.close()
    shards = len([s for s in stats["shards"] if s["sealed"]])
    print(
        f"{args.n:,} x {spec.dim} (mixture: {spec.clusters} clusters, spread {spec.spread}), "
        f"nlist {args.nlist}, nprobe {args.nprobe}, k {K}, {shards} sealed shards in RAM, "
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads"
    )
    print(f"memory add {t1 - t0:.0f} s, seal {t2 - t1:.0f} s; plain IVF add {t3 - t2:.0f} s")
    print(f"{'system':<16} {'recall@10':>9} {'QPS (batch 64)':>15}")
    print(
        f"{'faiss IVF-Flat':<16} {recall_at_k(found_plain, truth):>9.4f} "
        f"{qps['faiss IVF-Flat']:>15.0f}"
    )
    print(f"{'memory':<16} {recall_at_k(found_mem, truth):>9.4f} {qps['memory']:>15.0f}")
    ratio = qps["memory"] / qps["faiss IVF-Flat"]
    print(
        f"memory / plain IVF QPS at batch 64: {ratio:.3f} (target >= 0.90): "
        f"{'PASS' if ratio >= 0.9 else 'FAIL'}"
    )
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
