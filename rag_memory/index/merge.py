"""Merge per-shard top-k lists into one exact top-k (what faiss IndexShards does).

Done in numpy rather than with faiss.ResultHeap: heapify/reorder run an OpenMP loop whose
start-up costs milliseconds on a busy 2-core machine, while sorting nq x (shards * k)
candidates costs microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, addresses) of shape (nq, k) from several (nq, k_i) results, best first.

    Missing entries (address -1) sort last; ties keep the order of `parts` (stable sort).
    """
    if len(parts) == 1 and parts[0][0].shape[1] == k:
        return parts[0]
    scores = np.concatenate([p[0] for p in parts], axis=1)
    addrs = np.concatenate([p[1] for p in parts], axis=1)
    scores = np.where(addrs < 0, -np.inf, scores).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(scores, order, axis=1)
    top_addrs = np.take_along_axis(addrs, order, axis=1)
    top_addrs[~np.isfinite(top_scores)] = -1
    if top_scores.shape[1] < k:  # fewer candidates than k in all: pad like FAISS
        pad = k - top_scores.shape[1]
        top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        top_addrs = np.pad(top_addrs, ((0, 0), (0, pad)), constant_values=-1)
    return top_scores, top_addrs
