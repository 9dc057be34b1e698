"""How the default `seal_threshold` was chosen: a memory grown by `add()` alone, per threshold.

Until its first seal a memory has no router and its growing shard is searched exactly (a scan
of every vector); the first seal trains the router (nlist = 4*sqrt(n) at that size, capped at
39 training points per centroid), and from then on the growing shard is an IVF index over the
router's partitions. A smaller threshold ends the exact-scan window sooner but trains a coarser
router (nlist 512 at 25,000 vectors against 1,024 at 50,000 and 100,000) and seals more often.
Each threshold is built in its own process (for its peak RSS) from the same seeded vectors,
added in chunks as an application would; then, at the default nprobe (the router's recall
curve for recall@10 >= 0.95): recall@10 against exact search, single-query p50 / p99 and
batch-100 QPS. The first line is the cost of the exact window: one query over a flat index
the size of each threshold.

    python bench/seal_threshold.py                      # 200,000 x 384, thresholds 25k 50k 100k
    python bench/seal_threshold.py --n 100000 --thresholds 50000 100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import peak_rss_mib, recall_at_k  # noqa: E402

from rag_memory import Memory  # noqa: E402
from rag_memory.datasets.synthetic import MixtureSpec, base_vectors, query_vectors  # noqa: E402
from rag_memory.index.config import IndexConfig  # noqa: E402

K = 10
CHUNK = 10_000  # vectors per add(), as an application adds over time


def latencies_ms(search, queries: np.ndarray) -> np.ndarray:
    """Milliseconds of each single-query call, after a warm-up pass."""
    for q in queries[:50]:
        search(q[None, :])
    times = []
    for q in queries:
        t0 = time.perf_counter()
        search(q[None, :])
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3


def measure_one(args: argparse.Namespace, threshold: int) -> dict:
    """Build and search one memory (runs in a child process: its peak RSS is its own)."""
    spec = MixtureSpec(spread=args.spread)
    base, queries = base_vectors(spec, args.n), query_vectors(spec, args.queries)
    truth = np.load(args.truth, allow_pickle=False)
    config = IndexConfig(seal_threshold=threshold)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with Memory.create(Path(tmp) / "m", dim=spec.dim, index=config, cache=None) as mem:
            for start in range(0, args.n, CHUNK):
                ids = [str(i) for i in range(start, min(args.n, start + CHUNK))]
                mem.add(ids, ids=ids, vectors=base[start : start + CHUNK])
        build_s = time.perf_counter() - t0
        rss = peak_rss_mib()
        with Memory.open(Path(tmp) / "m", read_only=True, cache=None) as mem:
            found = np.array(
                [
                    [int(h.id) for h in hits] + [-1] * (K - len(hits))
                    for hits in mem.search(queries, k=K)
                ]
            )
            single = latencies_ms(lambda q: mem.search(q, k=K), queries)
            t0 = time.perf_counter()
            for start in range(0, len(queries), 100):
                mem.search(queries[start : start + 100], k=K)
            batch_qps = len(queries) / (time.perf_counter() - t0)
            index = mem.stats()["index"]
    return {
        "threshold": threshold,
        "build_s": build_s,
        "peak_rss_mib": rss,
        "nlist": index["nlist_chosen"],
        "nprobe": index["nprobe_chosen"],
        "recall": recall_at_k(found, truth),
        "p50_ms": float(np.percentile(single, 50)),
        "p99_ms": float(np.percentile(single, 99)),
        "batch_qps": batch_qps,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--thresholds", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=2.0, help="mixture noise (harder: larger)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--truth", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(args, args.child)))
        return 0
    spec = MixtureSpec(spread=args.spread)
    base, queries = base_vectors(spec, args.n), query_vectors(spec, args.queries)
    exact = faiss.IndexFlatIP(spec.dim)
    exact.add(base)
    scan_ms = {}
    for threshold in args.thresholds:  # the exact window's worst case: a scan of that many
        window = faiss.IndexFlatIP(spec.dim)
        window.add(base[:threshold])
        scan_ms[threshold] = float(
            np.median(latencies_ms(partial(window.search, k=K), queries[:200]))
        )
    with tempfile.TemporaryDirectory() as tmp:
        truth_path = Path(tmp) / "truth.npy"
        np.save(truth_path, exact.search(queries, K)[1], allow_pickle=False)
        del exact, base
        rows = []
        for threshold in args.thresholds:
            command = [
                sys.executable,
                __file__,
                "--child",
                str(threshold),
                "--truth",
                str(truth_path),
            ]
            command += [
                "--n",
                str(args.n),
                "--queries",
                str(args.queries),
                "--spread",
                str(args.spread),
            ]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    vector_mib = args.n * spec.dim * 4 / 2**20
    print(
        f"{args.n:,} x {spec.dim} mixture (spread {spec.spread}), added {CHUNK:,} at a time, "
        f"k {K}, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; "
        f"vectors {vector_mib:.0f} MiB"
    )
    print(
        f"{'seal_threshold':>14} {'exact window 1q ms':>18} {'build s':>8} {'peak RSS':>9} "
        f"{'nlist':>6} {'nprobe':>6} {'recall@10':>9} {'p50 ms':>7} {'p99 ms':>7} {'batch QPS':>9}"
    )
    for r in rows:
        print(
            f"{r['threshold']:>14,} {scan_ms[r['threshold']]:>18.2f} {r['build_s']:>8.1f} "
            f"{r['peak_rss_mib'] / vector_mib:>8.2f}x {r['nlist']:>6} {r['nprobe']:>6} "
            f"{r['recall']:>9.3f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['batch_qps']:>9.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
