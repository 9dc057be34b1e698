"""Helpers shared by the tests, imported as `from helpers import ...`.

pyproject's [tool.pytest.ini_options] puts tests/ and bench/ on sys.path, so this module (and
bench/_data.py) import the same way from every test folder; conftest.py keeps only fixtures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from rag_memory.index.config import IndexConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "bench"


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# A small exhaustively probed IVF-Flat memory that seals every 400 vectors into 4 group
# shards and merges a group at 3 shards: crash and repair tests of 16-dimensional vectors.
SMALL_IVF = IndexConfig(
    kind="ivf_flat",
    seal_threshold=400,
    nlist=16,
    nprobe=16,
    shard_groups=4,
    merge_threshold=3,
    rebalance_every=0,
)


def probe_size(variable: str, default: int) -> int:
    """The size of a reliability probe: `default` in CI, larger when `variable` is set in the
    environment (bench/reliability.py sets them all)."""
    return int(os.environ.get(variable, default))


def report_probe(
    probe: str, cases: int, clean_errors: int = 0, crashes: int = 0, lost: int = 0, wrong: int = 0
) -> None:
    """Append a probe's counts to $RAG_MEMORY_PROBE_LOG (JSON lines), when set, for the table
    bench/reliability.py prints: cases tried, clean errors (a RagMemoryError naming the
    fault), crashes or hangs, acknowledged data lost, wrong results. Call it before asserting,
    so a failing probe is counted too."""
    log = os.environ.get("RAG_MEMORY_PROBE_LOG")
    if log:
        line = {"probe": probe, "cases": cases, "clean_errors": clean_errors}
        line.update(crashes=crashes, lost=lost, wrong=wrong)
        with open(log, "a") as f:
            f.write(json.dumps(line) + "\n")
