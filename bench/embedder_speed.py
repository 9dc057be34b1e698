"""Embedder speed on SciFact: bare torch `SentenceTransformer.encode` against the project's
default embedder and each ONNX variant, in one run, on the same texts, with the nDCG@10 each
gives on SciFact train.

  * speed: the corpus (title + " " + text, as BEIR embeds it) in consecutive blocks, every
    side encoding each block in turn (the order rotating), so that a shared machine's drift
    hits all sides alike; vectors/s over the whole corpus, and the median over blocks of
    time(torch) / time(side). The train queries (short claims) are timed the same way.
  * quality: exact search (inner product of unit vectors) of each side's query vectors over
    its own corpus vectors, nDCG@10 by ranx; and "torch corpus", the side's queries over
    torch's corpus vectors: a memory built with torch and searched with this backend.
  * agreement: the cosine of each side's corpus vectors with torch's, row by row.

    python bench/embedder_speed.py [--limit N] [--scifact DIR] [--block 256] [--out DIR]

--limit N embeds the first N documents and keeps the train queries judged on them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _data import SCIFACT
from _report import print_and_save
from _timing import median_ratio

from rag_memory.datasets.beir import iter_corpus, load_split
from rag_memory.embed import Embedder
from rag_memory.embed.embedder import default_model_path
from rag_memory.evaluation.metrics import evaluate_run

K = 10
TORCH = "torch encode"
Encode = Callable[[list[str]], np.ndarray]


def sides(batch_size: int) -> dict[str, Encode]:
    """Each side's encode, loaded (and exported to ONNX, on a first run) before any timing."""
    from sentence_transformers import SentenceTransformer

    bare = SentenceTransformer(str(default_model_path()), device="cpu")

    def torch_encode(texts: list[str]) -> np.ndarray:
        return bare.encode(texts, batch_size=batch_size, normalize_embeddings=True)

    out: dict[str, Encode] = {TORCH: torch_encode}
    for variant in ("fp32", "int8"):
        embedder = Embedder(backend="onnx", onnx_variant=variant, batch_size=batch_size)
        out[f"onnx-{variant}"] = embedder.encode
    for encode in out.values():
        encode(["warm up", "the model before timing"])
    return out


def timed_blocks(encoders: dict[str, Encode], texts: list[str], block: int) -> dict[str, dict]:
    """Per side: its vectors for `texts` and its seconds for each block, sides interleaved."""
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in encoders}
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    order = list(encoders)
    for start in range(0, len(texts), block):
        chunk = texts[start : start + block]
        for name in order:
            t0 = time.perf_counter()
            vectors[name].append(np.asarray(encoders[name](chunk), dtype=np.float32))
            seconds[name].append(time.perf_counter() - t0)
        order.append(order.pop(0))
    return {n: {"vectors": np.concatenate(vectors[n]), "seconds": seconds[n]} for n in encoders}


def ndcg(
    queries: np.ndarray, corpus: np.ndarray, query_ids: list[str], doc_ids: list[str], qrels: dict
) -> float:
    """nDCG@10 of exact inner-product search."""
    scores = queries @ corpus.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    run = {
        qid: {doc_ids[j]: float(scores[i, j]) for j in row}
        for i, (qid, row) in enumerate(zip(query_ids, top.tolist(), strict=True))
    }
    return evaluate_run(qrels, run, ["ndcg@10"])[0]["ndcg@10"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scifact", type=Path, default=SCIFACT)
    parser.add_argument("--limit", type=int, default=None, help="embed the first N documents")
    parser.add_argument("--block", type=int, default=256, help="texts per interleaved block")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("results/embedder"))
    args = parser.parse_args()
    if not (args.scifact / "corpus.jsonl").is_file():
        print(f"SciFact not found at {args.scifact} (pass --scifact DIR)", file=sys.stderr)
        return 2
    docs = list(iter_corpus(args.scifact))[: args.limit]
    doc_ids, texts = [d.doc_id for d in docs], [d.text for d in docs]
    split = load_split(args.scifact, "train")
    held = set(doc_ids)
    qrels = {q: rel for q, rel in split.qrels.items() if held & set(rel)}
    query_ids = list(qrels)
    queries = [split.queries[q] for q in query_ids]

    t0 = time.perf_counter()
    encoders = sides(args.batch_size)
    load_s = time.perf_counter() - t0
    corpus = timed_blocks(encoders, texts, args.block)
    asked = timed_blocks(encoders, queries, args.block)
    reference = corpus[TORCH]["vectors"]
    chosen = Embedder().backend_description  # what a default Embedder runs here
    default = TORCH if chosen == "torch" else chosen
    result: dict = {"documents": len(texts), "queries": len(queries), "load_s": load_s}
    rows = []
    for name in encoders:
        c, q = corpus[name], asked[name]
        cos = (c["vectors"] * reference).sum(axis=1)
        figures = {
            "corpus_vectors_per_s": len(texts) / sum(c["seconds"]),
            "query_vectors_per_s": len(queries) / sum(q["seconds"]),
            "corpus_speedup": median_ratio(
                {"t": corpus[TORCH]["seconds"], "s": c["seconds"]}, "t", "s"
            ),
            "query_speedup": median_ratio(
                {"t": asked[TORCH]["seconds"], "s": q["seconds"]}, "t", "s"
            ),
            "ndcg@10": ndcg(q["vectors"], c["vectors"], query_ids, doc_ids, qrels),
            "ndcg@10_torch_corpus": ndcg(q["vectors"], reference, query_ids, doc_ids, qrels),
            "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()),
        }
        result[name] = figures
        rows.append((name + (" (default)" if name == default else ""), figures))
    base = result[TORCH]["ndcg@10"]
    header = (
        f"{'side':<22}{'corpus vec/s':>13}{'x torch':>9}{'query vec/s':>13}{'x torch':>9}"
        f"{'nDCG@10':>9}{'delta':>9}{'torch corpus':>14}{'cos min':>9}{'cos mean':>10}"
    )
    lines = [
        f"SciFact: {len(texts)} documents, {len(queries)} train queries, batch "
        f"{args.batch_size}, blocks of {args.block}; loading (and any ONNX export) {load_s:.1f} s",
        header,
    ]
    for name, f in rows:
        lines.append(
            f"{name:<22}{f['corpus_vectors_per_s']:>13.1f}{f['corpus_speedup']:>8.2f}x"
            f"{f['query_vectors_per_s']:>13.1f}{f['query_speedup']:>8.2f}x"
            f"{f['ndcg@10']:>9.4f}{f['ndcg@10'] - base:>+9.4f}{f['ndcg@10_torch_corpus']:>14.4f}"
            f"{f['cosine_min']:>9.5f}{f['cosine_mean']:>10.6f}"
        )
    table = "\n".join(lines)
    print_and_save(args.out, "speed", result, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
