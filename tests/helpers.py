"""Helpers shared by the tests, imported as `from helpers import ...`.

pyproject's [tool.pytest.ini_options] puts tests/ and bench/ on sys.path, so this module (and
bench/_data.py) import the same way from every test folder; conftest.py keeps only fixtures.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from rag_memory.embed import Embedder
from rag_memory.index.config import IndexConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "bench"


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class HashEmbedder(Embedder):
    """A fast stand-in model: a fixed random unit vector per text; counts its calls."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__("test/hash-embedder")
        self._dim = dim
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        self.calls += 1
        seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little") for t in texts]
        return np.stack([unit_vectors(1, self._dim, seed=s)[0] for s in seeds])


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


class FakeGenerator:
    """Answers with the last word of the heaviest slot (plus a second line the runner must cut),
    nothing without slots; records every call. Prefill time depends on the fusion mode."""

    PREFILL = {"concat": 0.4, "mixture": 0.3, "xattn": 0.1}

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def answer(
        self,
        question: str,
        slots: Sequence[str],
        weights: Sequence[float],
        fusion: str,
        *,
        slot_keys: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
    ) -> SimpleNamespace:
        self.calls.append(
            {
                "question": question,
                "slots": list(slots),
                "weights": list(weights),
                "fusion": fusion,
                "slot_keys": slot_keys,
                "max_new_tokens": max_new_tokens,
            }
        )
        text = f" {slots[int(np.argmax(weights))].split()[-1]}\nmore text" if slots else ""
        prefill = self.PREFILL[fusion] / (10 if not slots else 1)
        return SimpleNamespace(
            text=text,
            timings={
                "prefill_s": prefill,
                "total_s": prefill + 1,
                "slot_cache_hits": 0,
                "slot_cache_misses": len(slots) if fusion == "xattn" else 0,
            },
        )
