"""Shared fixtures: one loaded embedder per session, small vector memories, SciFact embedded once.

SciFact vectors are cached on disk (RAG_MEMORY_TEST_CACHE, default ~/.cache/rag_memory/tests),
keyed by the corpus file's checksum and the model, so the ~5 minute embedding runs once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rag_memory import Memory  # noqa: E402
from rag_memory.embed import Embedder  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCIFACT = SHARED_DATA / "scifact"
CACHE_DIR = Path(os.environ.get("RAG_MEMORY_TEST_CACHE",
                                Path.home() / ".cache" / "rag_memory" / "tests"))


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
def text_memory(tmp_path: Path, embedder: Embedder) -> Iterator[Memory]:
    with Memory.create(tmp_path / "mem", embedder=embedder) as mem:
        yield mem


@pytest.fixture
def vector_memory(tmp_path: Path) -> Iterator[Memory]:
    """A memory of 200 random 16-d slots with ids s0..s199 and metadata {"n": i, "even": bool}."""
    with Memory.create(tmp_path / "vmem", dim=16) as mem:
        mem.add([f"slot {i}" for i in range(200)], ids=[f"s{i}" for i in range(200)],
                metadata=[{"n": i, "even": i % 2 == 0, "group": f"g{i % 5}"} for i in range(200)],
                vectors=unit_vectors(200, 16))
        yield mem


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _cached_encode(embedder: Embedder, texts: list[str], key: str) -> np.ndarray:
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


@pytest.fixture(scope="session")
def scifact(embedder: Embedder) -> dict:
    """SciFact corpus (title + " " + text) and train queries, with their embeddings."""
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"SciFact not found at {SCIFACT} (../shared/data is only in the dev/CI checkout)")
    corpus = _read_jsonl(SCIFACT / "corpus.jsonl")
    qrels: dict[str, dict[str, int]] = {}
    with open(SCIFACT / "qrels" / "train.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    queries = [q for q in _read_jsonl(SCIFACT / "queries.jsonl") if q["_id"] in qrels]
    ids = [d["_id"] for d in corpus]
    texts = [f"{d['title']} {d['text']}".strip() for d in corpus]
    digest = hashlib.sha256((SCIFACT / "corpus.jsonl").read_bytes()).hexdigest()[:16]
    model = embedder.name.replace("/", "__")
    doc_vectors = _cached_encode(embedder, texts, f"scifact-corpus-{model}-{digest}")
    qtexts = [q["text"] for q in queries]
    qdigest = hashlib.sha256("\n".join(qtexts).encode()).hexdigest()[:16]
    query_vectors = _cached_encode(embedder, qtexts, f"scifact-train-queries-{model}-{qdigest}")
    return {"ids": ids, "texts": texts, "vectors": doc_vectors, "queries": qtexts,
            "query_ids": [q["_id"] for q in queries], "query_vectors": query_vectors,
            "qrels": qrels}
