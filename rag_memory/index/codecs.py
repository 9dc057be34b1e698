"""The codecs of sealed shards: how an IVF index of each kind is made, and when its candidates
are re-ranked exactly from the shard's full-precision vectors (its .vec file).

- ivf_fp16: IEEE half-precision codes (FAISS `ScalarQuantizer` QT_fp16, no training), half the
  bytes of IVF-Flat per probed vector. A probe is a memory-bound scan, so halving the bytes
  speeds it up at the same recall: on the peer benchmark's 100,000 x 384 vectors (nlist 1,024,
  nprobe 16, 2 cores), recall@10 0.965 for both, 14,524 vs 8,474 q/s in batches of 100 and
  8,540 vs 5,726 one query at a time; from 10,000 to 100,000 vectors fp16 scanned 1.5-2.2x
  faster in batches and 1.2-2.0x alone, recall within 0.001. "auto" picks it.
  Its scores are within `fp16_score_error` of the exact ones. A search probing every partition
  is promised exact, so there the candidates are re-ranked exactly, and more are fetched
  until the bound proves that none left out could enter the top-k (`more_candidates`).
- ivf_flat: float32 codes, scores exact as they are.
- ivf_pq: PQ codes (8 bits per sub-code), always re-ranked: k * refine_factor candidates get
  their exact scores, as FAISS `IndexRefine` does; PQ alone ranks poorly.
"""

from __future__ import annotations

import faiss
import numpy as np

IVF_FLAT, IVF_FP16, IVF_PQ = "ivf_flat", "ivf_fp16", "ivf_pq"
SEALED_KINDS = (IVF_FLAT, IVF_FP16, IVF_PQ)  # what a sealed shard (and the router) can be
PQ_NBITS = 8
# An exhaustive fp16 search first fetches this many candidates per hit for re-ranking (and 8x
# more each time the error bound cannot prove the top-k exact, which ties near the k-th
# score cause).
FP16_EXHAUSTIVE_FACTOR = 2
_FP16_GROWTH = 8


def fp16_score_error(dim: int) -> float:
    """An upper bound on |fp16 score - exact score| for unit vectors of `dim`: rounding a
    component to half precision changes it by at most 2**-11 of itself (2**-25 absolute in the
    subnormal range), so by Cauchy-Schwarz the inner product moves by at most
    2**-11 + dim * 2**-25; float32 accumulation of either score adds at most dim * 2**-24
    each (Higham, "Accuracy and Stability of Numerical Algorithms", 3.1)."""
    return 2.0**-11 + dim * (2.0**-25 + 2 * 2.0**-24)


def new_ivf(
    kind: str, quantizer: faiss.IndexFlatIP, nlist: int, like: faiss.IndexIVF | None = None
) -> faiss.IndexIVF:
    """An empty, trained IVF index of `kind` over `quantizer`'s `nlist` centroids (inner
    product): a shard's group, or the stacked lists of all groups. IVF-PQ shares the codebook
    of `like`, the router's trained template (`new_pq_template` makes that one)."""
    dim = quantizer.d
    metric = faiss.METRIC_INNER_PRODUCT
    if kind == IVF_PQ:
        if like is None:
            raise ValueError("an IVF-PQ index is made like a trained template")
        pq = like.pq
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq.M, pq.nbits, metric)
        index.pq = pq  # the memory-wide codebook (SWIG copies the struct)
        index.by_residual = like.by_residual
    elif kind == IVF_FP16:
        qtype = faiss.ScalarQuantizer.QT_fp16
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, qtype, metric, False)
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
    index.is_trained = True  # the centroids are the router's; fp16 and flat train nothing else
    return index


def new_pq_template(quantizer: faiss.IndexFlatIP, nlist: int, pq_m: int) -> faiss.IndexIVFPQ:
    """An untrained IVF-PQ index over the router's centroids, to train its codebook on."""
    return faiss.IndexIVFPQ(
        quantizer, quantizer.d, nlist, pq_m, PQ_NBITS, faiss.METRIC_INNER_PRODUCT
    )


def reranks(kind: str, nprobe: int, nlist: int) -> bool:
    """Whether a search of `kind` probing `nprobe` of `nlist` partitions re-ranks its
    candidates exactly (module doc): IVF-PQ always, IVF-fp16 when it probes them all."""
    return kind == IVF_PQ or (kind == IVF_FP16 and nprobe >= nlist)


def first_candidates(kind: str, k: int, refine_factor: int, available: int) -> int:
    """Candidates per query a re-ranking search of `kind` fetches first, never more than the
    `available` vectors (each searched index allocates nq x candidates results)."""
    factor = refine_factor if kind == IVF_PQ else FP16_EXHAUSTIVE_FACTOR
    return min(k * factor, max(k, available))


def more_candidates(
    kind: str,
    k: int,
    fetched: tuple[np.ndarray, np.ndarray],
    exact: np.ndarray,
    dim: int,
    available: int,
) -> int:
    """0 when the re-ranked top-k stands, else how many candidates to fetch instead.
    `fetched`: the (nq, kk) codec scores and addresses of the candidates (-1 pads), best
    first; `exact`: the (nq, k) exact scores after re-ranking. IVF-PQ's top-k stands (its
    refine_factor is the knob); an exhaustive fp16 search's stands when no candidate left out
    could beat the k-th: their codec scores are at most the last one fetched, so their exact
    ones at most that plus `fp16_score_error`."""
    scores, addrs = fetched
    kk = addrs.shape[1]
    if kind != IVF_FP16 or kk >= available:
        return 0
    left_out = addrs[:, -1] >= 0  # a query whose lists ran out has left nothing out
    bound = scores[:, -1] + fp16_score_error(dim)
    doubtful = left_out & (bound >= exact[:, k - 1])
    return min(kk * _FP16_GROWTH, available) if doubtful.any() else 0
