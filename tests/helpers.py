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
