"""A 3-shard memory on Ray vs one memory over the same vectors: what the actors and the merge cost.

Both are made as a user makes them (defaults: no compact, no nprobe set; query cache off so
every query is searched), from the same Gaussian-mixture vectors, in one run. Search QPS at
batch 64 and batch 1 is timed in interleaved rounds (bench/_timing.py), recall@10 against an
exact scan. The sharded memory runs on a local Ray runtime: each shard actor holds one
logical CPU, so FAISS inside it runs one thread per shard, and the client embeds nothing here
(vector queries). On one machine this measures overhead, not scale-out: every shard shares
the same cores (README "Scaling on Ray" has the model for more nodes).

With `--corpus`, it also times `rag-memory build CORPUS --ray` with 1 and with 2 embedder
workers (Ray Data actors) on the first `--limit` documents, each build in its own process,
and reports the build reports' vectors/s side by side.

    python bench/sharded_scaling.py                    # 1,000,000 x 384, 3 shards
    python bench/sharded_scaling.py --n 100000 --rounds 3
    python bench/sharded_scaling.py --n 0 --corpus ../shared/data/scifact --limit 2000
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import print_and_save  # noqa: E402
from _timing import alternating_qps, recall_at_k  # noqa: E402

from rag_memory import Memory  # noqa: E402
from rag_memory.datasets.synthetic import MixtureSpec, iter_base, query_vectors  # noqa: E402
from rag_memory.distributed import ShardedMemory  # noqa: E402

K = 10


def _fill(memory: Any, spec: MixtureSpec, n: int) -> float:
    """Add the n vectors in the generator's chunks; seconds taken."""
    start_s, start = time.perf_counter(), 0
    for chunk in iter_base(spec, n):
        ids = [str(i) for i in range(start, start + len(chunk))]
        memory.add(ids, ids=ids, vectors=chunk)
        start += len(chunk)
    return time.perf_counter() - start_s


def _found(results: list[list[Any]]) -> np.ndarray:
    """Row i: the int ids of query i's hits (-1 padded)."""
    return np.array([[int(h.id) for h in hits] + [-1] * (K - len(hits)) for hits in results])


def _build_rates(corpus: Path, limit: int, shards: int, tmp: Path) -> list[str]:
    """`rag-memory build --ray` with 1 and 2 embedder workers: the report's figures."""
    lines = [f"{'embedder workers':<16} {'vectors':>8} {'build s':>8} {'vectors/s':>10}"]
    rates = {}
    for workers in (1, 2):
        out = tmp / f"build-{workers}"
        command = [sys.executable, "-m", "rag_memory.cli", "build", str(corpus), "--out", str(out),
                   "--ray", "--shards", str(shards), "--workers", str(workers),
                   "--limit", str(limit), "--no-progress"]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        report = json.loads((out / "build_report.json").read_text())
        rates[workers] = report["vectors_per_s"]
        lines.append(
            f"{workers:<16} {report['vectors_written']:>8} {report['seconds']['total']:>8.1f} "
            f"{report['vectors_per_s']:>10.1f}"
        )
    lines.append(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--queries", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per timed round")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--corpus", type=Path, default=None, help="also time --ray builds")
    parser.add_argument("--limit", type=int, default=2_000, help="documents per timed build")
    args = parser.parse_args()
    if args.corpus is not None:
        with tempfile.TemporaryDirectory() as tmp:
            table = "\n".join(_build_rates(args.corpus, args.limit, args.shards, Path(tmp)))
        print_and_save(args.out, "sharded_build", {"table": table}, table)
    if args.n == 0:
        return 0
    logging.basicConfig(level=logging.WARNING)
    spec = MixtureSpec(spread=1.0)
    queries = query_vectors(spec, args.queries)
    exact = faiss.IndexFlatIP(spec.dim)
    for chunk in iter_base(spec, args.n):
        exact.add(chunk)
    truth = exact.search(queries, K)[1]
    del exact
    with tempfile.TemporaryDirectory() as tmp:
        one = Memory.create(Path(tmp) / "one", dim=spec.dim, cache=None)
        one_build = _fill(one, spec, args.n)
        sharded = ShardedMemory.create(Path(tmp) / "sharded", args.shards, dim=spec.dim, cache=None)
        sharded_build = _fill(sharded, spec, args.n)
        sides = {
            "one memory": lambda q: one.search(q, k=K),
            f"{args.shards} shards": lambda q: sharded.search(q, k=K),
        }
        recall = {
            "one memory": recall_at_k(_found(one.search(queries, k=K)), truth),
            f"{args.shards} shards": recall_at_k(_found(sharded.search(queries, k=K)), truth),
        }
        qps = {
            batch: alternating_qps(sides, queries, batch, args.rounds, args.budget)
            for batch in (64, 1)
        }
        members = [m["slots"] for m in sharded.stats()["members"]]
        sharded.close()
        one.close()
    names = list(sides)
    lines = [
        f"{args.n:,} x {spec.dim} (mixture: {spec.clusters} clusters, spread {spec.spread}), "
        f"k {K}, defaults (no compact, cache off), {args.shards} shards of {members} slots, "
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads in this process",
        f"{'system':<14} {'recall@10':>9} {'QPS batch 64':>13} {'QPS batch 1':>12} {'build s':>8}",
    ]
    builds = {names[0]: one_build, names[1]: sharded_build}
    for name in names:
        lines.append(
            f"{name:<14} {recall[name]:>9.4f} {qps[64][name]:>13.0f} {qps[1][name]:>12.0f} "
            f"{builds[name]:>8.0f}"
        )
    lines.append(
        f"sharded / one memory: batch 64 {qps[64][names[1]] / qps[64][names[0]]:.2f}x, "
        f"batch 1 {qps[1][names[1]] / qps[1][names[0]]:.2f}x, "
        f"build {builds[names[0]] / builds[names[1]]:.2f}x"
    )
    result = {"n": args.n, "shards": args.shards, "recall": recall, "qps": qps, "build_s": builds}
    print_and_save(args.out, f"sharded_scaling_{args.n}", result, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
