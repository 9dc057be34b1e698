"""Merge per-shard top-k lists into one exact top-k (what faiss IndexShards does).

Done in numpy rather than with faiss.ResultHeap: heapify/reorder run an OpenMP loop whose
start-up costs milliseconds on a busy 2-core machine, while sorting nq x (shards * k)
candidates costs microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def merge_topk(parts: Sequence[tuple[np.ndarray, ...]], k: int) -> tuple[np.ndarray, ...]:
    """(scores, addresses, *extra) of shape (nq, k) from several (nq, k_i) results, best first.

    Each part is (scores, addresses) plus any extra per-candidate arrays (e.g. the shard each
    came from), which are reordered alike. Missing entries (address -1) sort last; ties keep the
    order of `parts` (stable sort).
    """
    if len(parts) == 1 and parts[0][0].shape[1] == k:
        return parts[0]  # already a top-k (FAISS returns rows sorted)
    columns = [np.concatenate([p[j] for p in parts], axis=1) for j in range(len(parts[0]))]
    scores = np.where(columns[1] < 0, -np.inf, columns[0]).astype(np.float32, copy=False)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(scores))[:, None]  # plain fancy indexing: cheaper than take_along_axis
    top = [scores[rows, order]] + [c[rows, order] for c in columns[1:]]
    top[1][~np.isfinite(top[0])] = -1
    if top[0].shape[1] < k:  # fewer candidates than k in all: pad like FAISS
        pad = ((0, 0), (0, k - top[0].shape[1]))
        top = [np.pad(top[0], pad, constant_values=-np.inf)] + [
            np.pad(c, pad, constant_values=-1) for c in top[1:]
        ]
    return tuple(top)
