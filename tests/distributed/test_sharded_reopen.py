"""Reopening a sharded memory after its Ray runtime stopped (its own module: stopping the
runtime ends every actor, so no other module's memory may be open meanwhile)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import unit_vectors

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from test_sharded import DIM, SHARDS, _ids, _rows  # noqa: E402

from rag_memory.distributed import ShardedMemory  # noqa: E402


def test_reopening_after_the_runtime_stopped_loses_nothing(
    tmp_path: Path, ray_runtime: dict
) -> None:
    ids, texts, meta = _rows(2_000)
    vectors = unit_vectors(2_000, DIM, seed=9)
    root = tmp_path / "reopen"
    with ShardedMemory.create(root, SHARDS, dim=DIM) as mem:
        mem.add(texts, ids, meta, vectors)
        mem.delete(ids[:10])
        before = _ids(mem.search(vectors[:30], k=7, where={"even": True}))
    ray.shutdown()
    try:
        with ShardedMemory.open(root) as again:  # starts a local runtime of its own
            assert len(again) == 1_990 and not any(again.contains(ids[:10]))
            assert _ids(again.search(vectors[:30], k=7, where={"even": True})) == before
        assert not ray.is_initialized()  # it left the runtime it started
    finally:
        ray.init(**ray_runtime)
