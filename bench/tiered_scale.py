"""Scale check of the tiered index: 2,000,000 x 384 synthetic vectors, RAM budget 256 MiB.

Builds the memory (streamed: the vectors are generated in chunks, never all in RAM), computes
exact top-10 ground truth by a streamed brute-force scan, then searches in a fresh process (so
its peak RSS is the search's alone) and prints recall@10 at the default nprobe, QPS at batch 1
and 64, the recall-vs-nprobe curve and peak RSS. Targets: RSS < 1 GiB, recall@10 >= 0.90.

    python bench/tiered_scale.py --out memories/scale-2m          # ~20-30 min on 2 cores
    python bench/tiered_scale.py --out /tmp/s --n 200000           # a quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternating_qps, peak_rss_mib, recall_at_k  # noqa: E402

from rag_memory import Memory  # noqa: E402
from rag_memory.datasets.synthetic import MixtureSpec, iter_base, query_vectors  # noqa: E402
from rag_memory.index.config import IndexConfig  # noqa: E402

K = 10
MIB = 1 << 20


def build(out: Path, n: int, ram_bytes: int, spec: MixtureSpec) -> dict:
    config = IndexConfig(seal_threshold=100_000, expected_vectors=n, nlist=2048, rebalance_every=0)
    start_t = time.perf_counter()
    with Memory.create(out, dim=spec.dim, index=config, ram_bytes=ram_bytes, cache=None) as mem:
        start = 0
        for chunk in iter_base(spec, n):
            ids = [str(i) for i in range(start, start + len(chunk))]
            mem.add(ids, ids=ids, vectors=chunk)
            start += len(chunk)
            print(f"\r  added {start:,} / {n:,}", end="", flush=True)
        mem.compact()
        stats = mem.stats()
    print()
    return {
        "build_s": time.perf_counter() - start_t,
        "build_peak_rss_mib": peak_rss_mib(),
        "index": stats["index"],
        "tiers": stats["tiers"],
        "shards": len([s for s in stats["shards"] if s["sealed"]]),
    }


def ground_truth(spec: MixtureSpec, n: int, queries: np.ndarray) -> np.ndarray:
    """Exact top-K addresses (row + 1) by a chunked scan: RAM stays one chunk."""
    best_s = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_a = np.full((len(queries), K), -1, dtype=np.int64)
    start = 0
    for chunk in iter_base(spec, n):
        scores = queries @ chunk.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], axis=1)
        a = np.concatenate([best_a, top + start + 1], axis=1)
        order = np.argsort(-s, axis=1)[:, :K]
        best_s, best_a = np.take_along_axis(s, order, 1), np.take_along_axis(a, order, 1)
        start += len(chunk)
    return best_a


def search_phase(
    out: Path, ram_bytes: int, refine_factor: int | None, queries_path: Path, truth_path: Path
) -> dict:
    """Runs in its own process: open, search, report (its ru_maxrss is the search's peak)."""
    queries, truth = np.load(queries_path), np.load(truth_path)
    with Memory.open(out, ram_bytes=ram_bytes, cache=None, read_only=True) as mem:

        def addresses(results) -> np.ndarray:
            return np.array([[h.address for h in r] + [-1] * (K - len(r)) for r in results])

        default = mem.stats()["index"]["nprobe"]
        rf = {"refine_factor": refine_factor} if refine_factor else {}
        curve = {}
        for nprobe in (4, 8, 16, 32, 64, 128):
            found = addresses(mem.search(queries, k=K, nprobe=nprobe, **rf))
            curve[nprobe] = recall_at_k(found, truth)
        qps = {
            f"batch {b}": alternating_qps(
                {"m": lambda q: mem.search(q, k=K, nprobe=default, **rf)}, queries, b, 3, 2.0
            )["m"]
            for b in (1, 64)
        }
        stats = mem.stats()
    return {
        "default_nprobe": default,
        "recall_at_default": curve.get(default),
        "curve": curve,
        "qps": qps,
        "search_peak_rss_mib": peak_rss_mib(),
        "tiers": stats["tiers"],
        "fast_tier_hit_ratio": stats["fast_tier_hit_ratio"],
        "disk_bytes_read": stats["disk_bytes_read"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="memory directory (new)")
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--ram-mib", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--refine-factor",
        type=int,
        help="override the memory's IVF-PQ re-ranking factor at search time",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="search an --out memory built by "
        "an earlier run of this script (skips build and ground truth)",
    )
    parser.add_argument("--search-phase", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    ram_bytes = args.ram_mib * MIB
    if args.search_phase:
        print(json.dumps(search_phase(args.out, ram_bytes, args.refine_factor, *args.search_phase)))
        return 0
    spec = MixtureSpec()
    if args.reuse:
        built = json.loads((args.out / "bench_build.json").read_text())
    else:
        built = build(args.out, args.n, ram_bytes, spec)
        queries = query_vectors(spec, args.queries)
        np.save(args.out / "bench_queries.npy", queries)
        np.save(args.out / "bench_truth.npy", ground_truth(spec, args.n, queries))
        (args.out / "bench_build.json").write_text(json.dumps(built))
    extra = ["--refine-factor", str(args.refine_factor)] if args.refine_factor else []
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--out",
            str(args.out),
            "--n",
            str(args.n),
            "--ram-mib",
            str(args.ram_mib),
            *extra,
            "--search-phase",
            str(args.out / "bench_queries.npy"),
            str(args.out / "bench_truth.npy"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"{args.n:,} x {spec.dim}, RAM budget {args.ram_mib} MiB, re-ranking factor "
        f"{args.refine_factor or built['index']['refine_factor']}: {built['index']['reason']}"
    )
    print(
        f"build {built['build_s']:.0f} s (peak RSS {built['build_peak_rss_mib']:.0f} MiB), "
        f"{built['shards']} sealed shards; tiers {found['tiers']}"
    )
    print("nprobe  recall@10")
    for nprobe, recall in found["curve"].items():
        mark = "  <- default" if int(nprobe) == found["default_nprobe"] else ""
        print(f"{nprobe:>6}  {recall:.4f}{mark}")
    print(f"QPS batch 1: {found['qps']['batch 1']:.0f}, batch 64: {found['qps']['batch 64']:.0f}")
    rss, recall = found["search_peak_rss_mib"], found["recall_at_default"]
    print(
        f"search peak RSS {rss:.0f} MiB (target < 1024); recall@10 at default nprobe "
        f"{recall:.4f} (target >= 0.90): {'PASS' if rss < 1024 and recall >= 0.9 else 'FAIL'}"
    )
    return 0 if rss < 1024 and recall >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
