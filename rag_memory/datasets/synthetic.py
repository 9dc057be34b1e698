"""Seeded synthetic vectors for systems benchmarks: a Gaussian mixture on the unit sphere.

Uniform random vectors are the worst case for every ANN index (no structure to exploit) and
unlike real embeddings, which cluster by topic; a mixture of Gaussians around random centres
gives IVF-style indexes the kind of structure they meet in practice. Vectors are produced in
fixed-size chunks from one seeded generator, so the same (seed, n, dim) always yields the
same vectors, on any machine, without storing them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError

CHUNK = 65_536  # rows per generator call; part of the definition of the data set
_SLICE = 4_096  # rows per in-place step of a chunk (not part of the definition)


@dataclass(frozen=True)
class MixtureSpec:
    """A reproducible Gaussian-mixture data set."""

    dim: int = 384  # all-MiniLM-L6-v2's dimension
    clusters: int = 1000  # mixture components
    spread: float = 1.0  # noise norm relative to a centre's (unit) norm; larger = harder
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim <= 0 or self.clusters <= 0 or self.spread < 0:
            raise InvalidInputError(f"invalid mixture {self}")


def _centres(spec: MixtureSpec) -> np.ndarray:
    rng = np.random.default_rng([spec.seed, 0])
    centres = rng.standard_normal((spec.clusters, spec.dim), dtype=np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def _sample(spec: MixtureSpec, centres: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    labels = rng.integers(0, spec.clusters, size=n)
    # noise of expected norm `spread` in `dim` dimensions; built in place, in row slices, so
    # a chunk costs its own size in RAM and no full-size temporaries (scale builds stream it)
    x = rng.standard_normal((n, spec.dim), dtype=np.float32)
    x *= np.float32(spec.spread / np.sqrt(spec.dim))
    for start in range(0, n, _SLICE):
        rows = x[start : start + _SLICE]
        rows += centres[labels[start : start + _SLICE]]
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return x


def iter_base(spec: MixtureSpec, n: int) -> Iterator[np.ndarray]:
    """The n database vectors, in chunks of at most CHUNK rows (float32, unit rows)."""
    centres = _centres(spec)
    rng = np.random.default_rng([spec.seed, 1])
    for start in range(0, n, CHUNK):
        yield _sample(spec, centres, rng, min(CHUNK, n - start))


def base_vectors(spec: MixtureSpec, n: int) -> np.ndarray:
    """All n database vectors as one (n, dim) float32 array."""
    out = np.empty((n, spec.dim), dtype=np.float32)
    start = 0
    for chunk in iter_base(spec, n):
        out[start : start + len(chunk)] = chunk
        start += len(chunk)
    return out


def query_vectors(spec: MixtureSpec, n: int) -> np.ndarray:
    """n query vectors from the same mixture, from a separate stream (not database rows)."""
    return _sample(spec, _centres(spec), np.random.default_rng([spec.seed, 2]), n)
