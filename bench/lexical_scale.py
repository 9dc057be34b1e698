"""The lexical index at scale: its build cost and bytes, and dense / lexical / hybrid latency.

Data (seeded, generated in chunks, never stored): n short text slots of 8-16 words (uniform
length) drawn with Zipf frequencies (s = 1) from a 50,000-word synthetic vocabulary
(bench/_words.py), each with a 384-d unit vector from the project's Gaussian-mixture data set
(rag_memory.datasets.synthetic, the vectors of bench/tiered_scale.py), passed as `vectors=`
so nothing is embedded. Queries: 3-6 words from the same distribution, query vectors from the
mixture's query stream.

Build: the same chunks are added to two memories in turn, `lexical=True` and `lexical=False`
(default IndexConfig, seal_threshold 100,000, with `expected_vectors=n`), each add timed, so
the lexical index's cost is the difference, measured side by side: build seconds,
slots.sqlite bytes (FTS bytes = the difference) and both as ratios.

Search: single-query latency (p50 / p95 over --queries queries, cache off, k = 10) of dense
(a query vector), lexical (its text) and hybrid (both, default fusion) on the lexical memory,
and dense on the memory without a lexical index; the modes are called in turn on each query
(the order rotating) so machine drift hits all alike. A hybrid search embeds its text with the
memory's embedder, and `Memory.search` takes no query vector beside a text; so the lexical
memory's embedder here is `QueryVectors`, an `Embedder` that looks up each benchmark query's
precomputed vector (a dict lookup): hybrid times are search time without embedding. What real
embedding adds is timed separately (all-MiniLM-L6-v2 encoding one query, offline).

    python bench/lexical_scale.py                                  # 100k and 1M slots
    python bench/lexical_scale.py --sizes 100000 --queries 200 --out /tmp/lexical.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _words import ZipfWords  # noqa: E402

from rag_memory import Memory  # noqa: E402
from rag_memory.datasets.synthetic import MixtureSpec, iter_base, query_vectors  # noqa: E402
from rag_memory.embed import Embedder  # noqa: E402
from rag_memory.index.config import IndexConfig  # noqa: E402
from rag_memory.store.slot_table import TABLE_FILE  # noqa: E402

K = 10
DIM = 384
VOCABULARY = ZipfWords(50_000, exponent=1.0)
SLOT_WORDS = (8, 16)
QUERY_WORDS = (3, 6)
MODES = ("dense", "lexical", "hybrid", "dense, no lexical index")


class QueryVectors(Embedder):
    """An `Embedder` that knows only the benchmark's query texts: each maps to its
    precomputed vector, so a hybrid search's dense leg costs a lookup, not a model."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        super().__init__("bench/precomputed-query-vectors")
        self._vectors = dict(zip(texts, vectors, strict=True))

    @property
    def dim(self) -> int:
        return DIM

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        return np.stack([self._vectors[t] for t in texts])


def slot_chunks(n: int, seed: int) -> Any:
    """(ids, texts, vectors) of the n slots, in the mixture's chunks."""
    rng = np.random.default_rng([seed, 7])
    start = 0
    for vectors in iter_base(MixtureSpec(dim=DIM, seed=seed), n):
        ids = [f"s{i}" for i in range(start, start + len(vectors))]
        yield ids, VOCABULARY.sentences(rng, len(vectors), *SLOT_WORDS), vectors
        start += len(vectors)


def table_bytes(directory: Path) -> int:
    """slots.sqlite and its WAL (empty once the memory closed cleanly)."""
    return sum(p.stat().st_size for p in directory.glob(TABLE_FILE + "*") if p.is_file())


def build(workdir: Path, n: int, seed: int, embedder: Embedder) -> dict[str, dict[str, Any]]:
    """Both memories, chunk by chunk in turn; seconds and bytes of each."""
    config = IndexConfig(expected_vectors=n, rebalance_every=0)
    sides = {"lexical": True, "no lexical": False}
    mems = {
        name: Memory.create(
            workdir / name.replace(" ", "-"),
            embedder=embedder,
            dim=DIM,
            cache=None,
            index=config,
            lexical=lexical,
        )
        for name, lexical in sides.items()
    }
    seconds = dict.fromkeys(sides, 0.0)
    done = 0
    for ids, texts, vectors in slot_chunks(n, seed):
        for name, mem in mems.items():
            t0 = time.perf_counter()
            mem.add(texts, ids=ids, vectors=vectors)
            seconds[name] += time.perf_counter() - t0
        done += len(ids)
        print(f"\r  n={n:,}: added {done:,} to both", end="", flush=True)
    print()
    out = {}
    for name, mem in mems.items():
        t0 = time.perf_counter()
        mem.close()
        seconds[name] += time.perf_counter() - t0
        out[name] = {
            "build_s": seconds[name],
            "table_bytes": table_bytes(mem.path),
            "disk_bytes": sum(p.stat().st_size for p in mem.path.rglob("*") if p.is_file()),
        }
    return out


def percentiles(times: list[float]) -> dict[str, float]:
    p50, p95 = np.percentile(np.array(times) * 1e3, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95)}


def latencies(workdir: Path, texts: list[str], vectors: np.ndarray) -> dict[str, dict]:
    """p50 / p95 of one query per call in each mode, the modes called in turn per query."""
    lexical = Memory.open(workdir / "lexical", QueryVectors(texts, vectors), read_only=True)
    plain = Memory.open(workdir / "no-lexical", read_only=True)
    calls: dict[str, Callable[[int], object]] = {
        "dense": lambda i: lexical.search(vectors[i], K, cache=False),
        "lexical": lambda i: lexical.search(texts[i], K, mode="lexical", cache=False),
        "hybrid": lambda i: lexical.search(texts[i], K, mode="hybrid", cache=False),
        "dense, no lexical index": lambda i: plain.search(vectors[i], K, cache=False),
    }
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    order = list(MODES)
    try:
        for i in range(min(20, len(texts))):  # warm up: page cache, FAISS threads
            for mode in order:
                calls[mode](i)
        for i in range(len(texts)):
            for mode in order:
                t0 = time.perf_counter()
                calls[mode](i)
                times[mode].append(time.perf_counter() - t0)
            order.append(order.pop(0))
    finally:
        lexical.close()
        plain.close()
    return {mode: percentiles(t) for mode, t in times.items()}


def embedding_cost(texts: list[str]) -> dict[str, float]:
    """What a real hybrid query adds: all-MiniLM-L6-v2 encoding one query text."""
    model = Embedder()
    model.encode(texts[:5])  # load and warm up
    times = []
    for text in texts:
        t0 = time.perf_counter()
        model.encode([text])
        times.append(time.perf_counter() - t0)
    return percentiles(times)


def bench_size(n: int, queries: int, seed: int, workdir: Path) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 8])
    texts = VOCABULARY.sentences(rng, queries, *QUERY_WORDS)
    vectors = query_vectors(MixtureSpec(dim=DIM, seed=seed), queries)
    directory = workdir / f"n{n}"
    try:
        built = build(directory, n, seed, QueryVectors(texts, vectors))
        search = latencies(directory, texts, vectors)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"n": n, "queries": queries, "build": built, "latency": search}


def ratio_row(name: str, lexical: float, plain: float, unit: str, scale: float) -> str:
    return (
        f"| {name} | {lexical / scale:,.1f} {unit} | {plain / scale:,.1f} {unit} | "
        f"{(lexical - plain) / scale:,.1f} {unit} | {lexical / plain:.2f}x |"
    )


def print_report(results: list[dict[str, Any]], embed: dict[str, float]) -> None:
    print(f"\nslots: {SLOT_WORDS[0]}-{SLOT_WORDS[1]} words, {VOCABULARY.describe()}; ", end="")
    print(f"queries: {QUERY_WORDS[0]}-{QUERY_WORDS[1]} words; vectors: 384-d mixture, k={K}")
    for r in results:
        lex, plain = r["build"]["lexical"], r["build"]["no lexical"]
        print(f"\n### n = {r['n']:,}\n")
        print("| build | lexical=True | lexical=False | lexical index | ratio |")
        print("|---|---|---|---|---|")
        print(ratio_row("seconds", lex["build_s"], plain["build_s"], "s", 1.0))
        print(ratio_row("slots.sqlite", lex["table_bytes"], plain["table_bytes"], "MiB", 2**20))
        print(ratio_row("directory", lex["disk_bytes"], plain["disk_bytes"], "MiB", 2**20))
        print(f"\n| search: 1 query per call, k={K}, {r['queries']} queries | p50 ms | p95 ms |")
        print("|---|---|---|")
        for mode, t in r["latency"].items():
            print(f"| {mode} | {t['p50_ms']:.2f} | {t['p95_ms']:.2f} |")
    print(
        f"\nhybrid times exclude embedding the query; all-MiniLM-L6-v2 encoding one query: "
        f"p50 {embed['p50_ms']:.2f} ms, p95 {embed['p95_ms']:.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated slot counts")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="where the memories are built (temp dir)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(dir=args.workdir, prefix="lexical-scale-"))
    try:
        results = [bench_size(n, args.queries, args.seed, workdir) for n in sizes]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rng = np.random.default_rng([args.seed, 8])
    embed = embedding_cost(VOCABULARY.sentences(rng, args.queries, *QUERY_WORDS))
    print_report(results, embed)
    if args.out:
        data = {"vocabulary": VOCABULARY.describe(), "results": results, "embed_ms": embed}
        args.out.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
