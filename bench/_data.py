"""SciFact for tests and benchmarks: corpus and train queries, embedded once and kept on disk.

Embedding SciFact's 5,183 documents takes ~5 minutes on 2 CPU cores, so the vectors are cached
as .npy files (RAG_MEMORY_TEST_CACHE, default ~/.cache/rag_memory/tests), keyed by a checksum
of the texts' source and the model name (and "-int8" for int8 ONNX vectors); np.load runs with
allow_pickle=False.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rag_memory.datasets.jsonl import read_jsonl
from rag_memory.embed import Embedder

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCIFACT = SHARED_DATA / "scifact"
CACHE_DIR = Path(
    os.environ.get("RAG_MEMORY_TEST_CACHE", Path.home() / ".cache" / "rag_memory" / "tests")
)


def cached_encode(embedder: Embedder, texts: list[str], key: str) -> np.ndarray:
    """`embedder.encode(texts)`, read from CACHE_DIR/key.npy when a matching file is there."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"{key}.npy"
    if path.is_file():
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape == (len(texts), embedder.dim) and vectors.dtype == np.float32:
            return vectors
    vectors = embedder.encode(texts)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors, allow_pickle=False)
    os.replace(tmp, path)
    return vectors


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    return qrels


def load_scifact(embedder: Embedder, directory: Path = SCIFACT) -> dict[str, Any]:
    """SciFact corpus (title + " " + text) and train queries, with their embeddings.

    Raises FileNotFoundError when the dataset is absent (callers skip or exit with the reason).
    """
    if not (directory / "corpus.jsonl").is_file():
        raise FileNotFoundError(
            f"SciFact not found at {directory} (../shared/data is only in the dev/CI checkout)"
        )
    corpus = read_jsonl(directory / "corpus.jsonl")
    qrels = read_qrels(directory / "qrels" / "train.tsv")
    queries = [q for q in read_jsonl(directory / "queries.jsonl") if q["_id"] in qrels]
    ids = [d["_id"] for d in corpus]
    texts = [f"{d['title']} {d['text']}".strip() for d in corpus]
    digest = hashlib.sha256((directory / "corpus.jsonl").read_bytes()).hexdigest()[:16]
    # int8 vectors differ from torch's (fp32 ONNX agrees with torch to 1e-5): cached apart
    backend = embedder.backend_description
    model = embedder.name.replace("/", "__") + ("-int8" if backend == "onnx-int8" else "")
    doc_vectors = cached_encode(embedder, texts, f"scifact-corpus-{model}-{digest}")
    qtexts = [q["text"] for q in queries]
    qdigest = hashlib.sha256("\n".join(qtexts).encode()).hexdigest()[:16]
    query_vectors = cached_encode(embedder, qtexts, f"scifact-train-queries-{model}-{qdigest}")
    return {
        "ids": ids,
        "texts": texts,
        "vectors": doc_vectors,
        "queries": qtexts,
        "query_ids": [q["_id"] for q in queries],
        "query_vectors": query_vectors,
        "qrels": qrels,
    }


def scifact_or_exit(embedder: Embedder) -> dict[str, Any]:
    """`load_scifact` for a benchmark script: a missing dataset ends it with status 2."""
    try:
        return load_scifact(embedder)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


# Hand-written hard negatives for the query cache (question, a different question that shares
# its words): a semantic cache must never answer the second with the first's results.
HARD_NEGATIVE_PAIRS = [
    (
        "Aspirin reduces the risk of heart attacks.",
        "Aspirin does not reduce the risk of heart attacks.",
    ),
    ("Smoking increases the risk of lung cancer.", "Smoking decreases the risk of lung cancer."),
    ("Vitamin D deficiency causes bone loss.", "Bone loss causes vitamin D deficiency."),
    ("Insulin lowers blood glucose levels.", "Insulin raises blood glucose levels."),
    ("Macrophages activate T cells.", "T cells activate macrophages."),
    (
        "Obesity is a risk factor for type 2 diabetes.",
        "Type 2 diabetes is a risk factor for obesity.",
    ),
    ("Statins are effective in children.", "Statins are ineffective in children."),
    (
        "Mothers transmit the virus to their infants.",
        "Infants transmit the virus to their mothers.",
    ),
    (
        "Exercise improves sleep quality in older adults.",
        "Exercise worsens sleep quality in older adults.",
    ),
    (
        "p53 mutations are more common in men than in women.",
        "p53 mutations are more common in women than in men.",
    ),
]
