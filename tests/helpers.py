"""Helpers shared by the tests, imported as `from helpers import ...`.

pyproject's [tool.pytest.ini_options] puts tests/ and bench/ on sys.path, so this module (and
bench/_data.py) import the same way from every test folder; conftest.py keeps only fixtures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "bench"


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build_sealed_memory(
    path: Path, kind: str, n: int = 1200, dim: int = 16, ram_bytes: int | None = None
) -> list[str]:
    """A memory of `n` random unit slots v0.. (metadata {"n": i}) sealed into IVF shards of
    `kind` (four partition groups), with a few sealed tombstones and one slot left in the
    growing shard; `ram_bytes` leaves the shards beyond it on disk (memory-mapped). Returns
    the live ids."""
    from rag_memory import IndexConfig, Memory

    config = IndexConfig(kind=kind, seal_threshold=n // 3, nlist=16, shard_groups=4)
    with Memory.create(path, dim=dim, index=config, ram_bytes=ram_bytes) as mem:
        ids = [f"v{i}" for i in range(n)]
        mem.add(
            [f"text {i}" for i in range(n)],
            ids=ids,
            metadata=[{"n": i} for i in range(n)],
            vectors=unit_vectors(n, dim),
        )
        gone = ids[:60:7]
        mem.delete(gone)
        mem.add(["late"], ids=["late"], vectors=unit_vectors(1, dim, seed=99))
    return [i for i in ids if i not in gone] + ["late"]
