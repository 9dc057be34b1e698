"""The sealed-shard codecs (`rag_memory.index.codecs`): IVF-fp16 keeps IVF-Flat's recall in half
the bytes, its score error stays inside the stated bound, and a search probing every partition
stays exact, even among near-ties that fp16 alone cannot order."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
from helpers import unit_vectors

from rag_memory import IndexConfig, Memory
from rag_memory.index.codecs import IVF_FP16, fp16_score_error, more_candidates

DIM = 32


def _clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _memory(path: Path, kind: str, vectors: np.ndarray) -> Memory:
    config = IndexConfig(kind=kind, seal_threshold=len(vectors), nlist=64, shard_groups=4)
    mem = Memory.create(path, dim=DIM, index=config, cache=None)
    ids = [f"i{i}" for i in range(len(vectors))]
    mem.add(ids, ids=ids, vectors=vectors)
    return mem


def _exact_ids(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[list[str]]:
    flat = faiss.IndexFlatIP(DIM)
    flat.add(vectors)
    return [[f"i{r}" for r in row] for row in flat.search(queries, k)[1]]


def test_fp16_error_bound_holds() -> None:
    """Half-precision rounding of unit vectors moves inner products by less than the bound."""
    x, q = unit_vectors(4000, 384, seed=1), unit_vectors(50, 384, seed=2)
    x16 = x.astype(np.float16).astype(np.float32)
    err = np.abs(q @ x16.T - q @ x.T).max()
    assert 0 < err < fp16_score_error(384)
    assert fp16_score_error(384) < 1e-3  # tight enough to leave scores meaningful


def test_auto_chooses_fp16_with_flat_recall_in_half_the_bytes(tmp_path: Path) -> None:
    vectors, queries = _clustered(6000), _clustered(200, seed=7)
    truth = _exact_ids(vectors, queries, 10)
    recall, sizes = {}, {}
    for kind in ("auto", "ivf_flat"):
        with _memory(tmp_path / kind, kind, vectors) as mem:
            stats = mem.stats()
            found = [[h.id for h in hits] for hits in mem.search(queries, k=10, nprobe=8)]
            recall[stats["index"]["kind_chosen"]] = np.mean(
                [len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]
            )
            sizes[stats["index"]["kind_chosen"]] = sum(
                f.stat().st_size for f in (tmp_path / kind / "shards").glob("*.faiss")
            )
    assert set(recall) == {IVF_FP16, "ivf_flat"}
    assert recall[IVF_FP16] >= recall["ivf_flat"] - 0.005 and recall["ivf_flat"] > 0.7
    # codes: 2 bytes a dimension against 4, ids and centroids alike
    assert sizes[IVF_FP16] < 0.6 * sizes["ivf_flat"]


def test_probing_every_partition_is_exact_among_near_ties(tmp_path: Path) -> None:
    """Groups of vectors whose scores differ by less than fp16 can resolve: ranked by their
    codes alone the top-10 would be wrong; probing all partitions re-ranks them exactly. The
    comparison is by each rank's true score (float64), so two slots whose float32 scores tie
    may come in either order."""
    rng = np.random.default_rng(3)
    base = _clustered(3000, seed=4)
    near = base[:40, None, :] + 2e-4 * rng.standard_normal((40, 12, DIM)).astype(np.float32)
    near = (near / np.linalg.norm(near, axis=2, keepdims=True)).reshape(-1, DIM)
    vectors = np.concatenate([base, near]).astype(np.float32)
    queries = base[:40] + 0.05 * rng.standard_normal((40, DIM)).astype(np.float32)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    true = queries.astype(np.float64) @ vectors.T.astype(np.float64)
    best = -np.sort(-true, axis=1)[:, :10]

    def rank_error(rows: np.ndarray) -> float:
        return float(np.abs(np.take_along_axis(true, rows, 1) - best).max())

    codes = vectors.astype(np.float16).astype(np.float32)
    assert rank_error(np.argsort(-(queries @ codes.T), axis=1)[:, :10]) > 1e-6  # fp16 alone
    with _memory(tmp_path / "m", "ivf_fp16", vectors) as mem:
        hits = mem.search(queries, k=10, nprobe=64)
    rows = np.array([[int(h.id[1:]) for h in row] for row in hits])
    assert rank_error(rows) < 1e-7  # float32 resolution near 1 is 6e-8
    scores = np.array([[h.score for h in row] for row in hits])
    np.testing.assert_allclose(scores, best, atol=1e-6)  # exact scores, not the codes'


def test_more_candidates_asks_again_only_when_the_bound_leaves_doubt() -> None:
    exact = np.array([[0.9, 0.8]], dtype=np.float32)
    addrs = np.array([[1, 2, 3, 4]])
    err = fp16_score_error(DIM)
    clear = np.array([[0.9, 0.8, 0.7, 0.8 - 2 * err]], dtype=np.float32)
    close = np.array([[0.9, 0.8, 0.8, 0.8 - err / 2]], dtype=np.float32)
    assert more_candidates(IVF_FP16, 2, (clear, addrs), exact, DIM, available=100) == 0
    assert more_candidates(IVF_FP16, 2, (close, addrs), exact, DIM, available=100) == 32
    assert more_candidates(IVF_FP16, 2, (close, addrs), exact, DIM, available=20) == 20
    assert more_candidates(IVF_FP16, 2, (close, addrs), exact, DIM, available=4) == 0
    ran_out = np.array([[1, 2, 3, -1]])  # every candidate there was is already fetched
    assert more_candidates(IVF_FP16, 2, (close, ran_out), exact, DIM, available=100) == 0
    assert more_candidates("ivf_pq", 2, (close, addrs), exact, DIM, available=100) == 0
