"""Slot weights: from retrieval scores to w_i = softmax(s_i / T), and from w_i to attention bias.

Pure numpy, so evaluation code can compute the weights a generation would use without torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidWeightsError
from ..validation import is_number


def _as_vector(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    if isinstance(values, (str, bytes)):
        raise InvalidWeightsError(f"{what} must be a list of numbers, got a string")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidWeightsError(f"{what} must be a list of numbers: {exc}") from None
    if array.ndim != 1:
        raise InvalidWeightsError(f"{what} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidWeightsError(f"{what} holds NaN or infinite values: {array.tolist()}")
    return array


def weights_from_scores(scores: Sequence[float] | np.ndarray, temperature: float) -> np.ndarray:
    """w = softmax(scores / temperature) as float64; an empty input gives an empty array.

    Args:
        scores: retrieval scores of the slots (cosines for a rag_memory memory).
        temperature: > 0; smaller sharpens the weights towards the best-scoring slot.
    """
    if not is_number(temperature) or not math.isfinite(temperature) or temperature <= 0:
        raise InvalidWeightsError(f"temperature must be a finite number > 0, got {temperature!r}")
    s = _as_vector(scores, "scores") / temperature
    if not len(s):
        return s
    e = np.exp(s - s.max())  # shifted: exp of a large score/T would overflow
    return e / e.sum()


def check_weights(weights: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """User weights as a float64 vector summing to 1: n of them, finite, >= 0, not all 0."""
    w = _as_vector(weights, "weights")
    if len(w) != n:
        raise InvalidWeightsError(f"got {len(w)} weights for {n} slots")
    if n and (w < 0).any():
        raise InvalidWeightsError(f"weights must be >= 0, got {w.tolist()}")
    if n and not w.sum() > 0:
        raise InvalidWeightsError("weights are all 0: at least one slot must count")
    return w / w.sum() if n else w


def attention_bias(weights: np.ndarray) -> np.ndarray:
    """The additive bias log(w_i / max w) put on slot i's key columns (-inf where w_i = 0).

    Normalised by the largest weight, not by k (log(k * w_i)): both make equal weights exactly
    the unbiased parallel run (log 1 = 0, bit for bit), but this one never adds a positive bias,
    so the best slot is attended just as plain prompting would attend it and weaker ones less;
    log(k * w_i) would give a dominant slot of ten up to +2.3, more attention than the model
    ever gave a context in training. Weights are scale-free here, so they need not sum to 1.
    """
    with np.errstate(divide="ignore"):
        return np.log(weights / weights.max())
