"""One IVF search over a coarse assignment made elsewhere: the call every routed search makes.

The router assigns a query batch to partitions once; the stacked CPU tiers, each GPU-tier shard
and the indexed growing shard then search their inverted lists for that assignment with FAISS's
`IndexIVF::search_preassigned`, instead of each running the coarse quantizer again (the
pattern of FAISS's `IndexIVF.search_preassigned` and its `benchs/distributed_ondisk`).
`flat_search` is the plain search of a flat index (the router's quantizer, the growing shard
before the first seal) through the same kind of direct call.
"""

from __future__ import annotations

import functools

import faiss
import numpy as np

# FAISS's `IndexIVF::search` splits a batch over the OpenMP threads *before* it calls
# `search_preassigned`, which in the default parallel_mode 0 then runs sequentially: called
# directly, as every routed search here does, a batch ran on one core. `search_preassigned`
# splits the work itself in mode 1 (each query's probed lists over the threads, a heap per
# thread, merged) and mode 3 (the queries over the threads; faiss/IndexIVF.cpp). Measured
# through `Memory.search` on 100,000 x 384 at nprobe 16 (2 cores), q/s in batches of 100 /
# one at a time: mode 0 4,949 / 2,535; mode 1 7,477 / 3,672; mode 3 7,928 / 2,862; at nprobe
# 1, mode 1 batches ran at 19,759 and mode 3 at 25,118. So one query splits its lists and a
# batch its queries.
PARALLEL_OVER_LISTS = 1
PARALLEL_OVER_QUERIES = 3


def parallel_mode_for(n_queries: int) -> int:
    """The parallel_mode an IVF search of `n_queries` queries runs fastest in (above)."""
    return PARALLEL_OVER_LISTS if n_queries == 1 else PARALLEL_OVER_QUERIES


@functools.lru_cache(maxsize=256)
def _unfiltered(nprobe: int) -> faiss.SearchParametersIVF:
    """The parameters of an unfiltered search of rows of `nprobe` lists: FAISS only reads
    them, so one object serves every call and thread (building one cost 3 us a search)."""
    return faiss.SearchParametersIVF(nprobe=nprobe)


def search_preassigned(
    index: faiss.IndexIVF,
    queries: np.ndarray,
    k: int,
    lists: np.ndarray,
    coarse: np.ndarray,
    selector: faiss.IDSelector | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) of `index` for `queries` whose partitions are `lists` (nq, nprobe;
    -1 skipped) at centroid similarities `coarse`; `selector` filters ids. The C entry point
    is called directly: the Python wrapper re-checks and copies what is already in shape."""
    lists = np.ascontiguousarray(lists, dtype=np.int64)  # named: must outlive the call
    coarse = np.ascontiguousarray(coarse, dtype=np.float32)
    if selector is None:
        params = _unfiltered(lists.shape[1])
    else:
        params = faiss.SearchParametersIVF(nprobe=lists.shape[1])
        params.sel = selector
    nq = len(queries)
    scores = np.empty((nq, k), dtype=np.float32)
    ids = np.empty((nq, k), dtype=np.int64)
    index.search_preassigned_c(
        nq,
        faiss.swig_ptr(queries),
        k,
        faiss.swig_ptr(lists),
        faiss.swig_ptr(coarse),
        faiss.swig_ptr(scores),
        faiss.swig_ptr(ids),
        False,
        params,
    )
    return scores, ids


def flat_search(
    index: faiss.IndexFlat,
    queries: np.ndarray,
    k: int,
    params: faiss.SearchParameters | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, row numbers) of `index` for `queries`, which must be float32 C-contiguous
    rows already (`validation.check_vectors` makes them so): FAISS's C entry point, since the
    Python wrapper's checks and copies cost as much as a small scan or a single routing."""
    nq = len(queries)
    scores = np.empty((nq, k), dtype=np.float32)
    rows = np.empty((nq, k), dtype=np.int64)
    index.search_c(
        nq, faiss.swig_ptr(queries), k, faiss.swig_ptr(scores), faiss.swig_ptr(rows), params
    )
    return scores, rows
