"""GPU tier: the same shard gives the same results on the GPU as on the CPU (needs faiss-gpu)."""

from __future__ import annotations

import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from rag_memory import Memory
from rag_memory.index.config import IndexConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        faiss.get_num_gpus() == 0, reason="no GPU visible to FAISS (faiss-cpu or no device)"
    ),
]


@pytest.mark.parametrize("kind", ["ivf_flat", "ivf_fp16"])
def test_gpu_tier_equals_cpu_tier(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50_000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    queries = x[:256] + 0.05 * rng.standard_normal((256, 64)).astype(np.float32)
    config = IndexConfig(
        kind=kind,
        seal_threshold=10**9,
        nlist=256,
        nprobe=16,
        shard_groups=8,
        rebalance_every=0,
    )
    with Memory.create(tmp_path / "m", dim=64, index=config, cache=None, gpu_bytes=0) as mem:
        mem.add([str(i) for i in range(len(x))], vectors=x)
        mem.compact()
    timings, results = {}, {}
    for tier, gpu_bytes in (("cpu", 0), ("gpu", 8 << 30)):
        with Memory.open(tmp_path / "m", cache=None, gpu_bytes=gpu_bytes) as mem:
            stats = mem.stats()
            assert (stats["tiers"]["gpu"]["shards"] > 0) == (tier == "gpu")
            results[tier] = [[h.id for h in r] for r in mem.search(queries, k=10)]
            start = time.perf_counter()
            for _ in range(20):
                mem.search(queries, k=10)
            timings[tier] = 20 * len(queries) / (time.perf_counter() - start)
    print(
        f"GPU tier {timings['gpu']:.0f} q/s vs CPU tier {timings['cpu']:.0f} q/s "
        f"({timings['gpu'] / timings['cpu']:.2f}x) at batch 256"
    )
    assert results["gpu"] == results["cpu"]
