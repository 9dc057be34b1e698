"""A read-only process searching while a writer process adds, deletes, seals and compacts:
no errors, no stale result (a slot whose delete was acknowledged before the search began), no
missing one (a slot acknowledged before the search began and not being deleted), no wrong one.

Both processes stamp events with time.monotonic(), one clock for every process on Linux
(CLOCK_MONOTONIC), so the writer's acknowledgements and the reader's searches can be ordered.
Bounded in time: RAG_MEMORY_SOAK_SECONDS (default 12) seconds of writing; longer runs:
`RAG_MEMORY_SOAK_SECONDS=120 python -m pytest tests/test_reader_beside_writer.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from helpers import report_probe

from rag_memory import Memory

SECONDS = float(os.environ.get("RAG_MEMORY_SOAK_SECONDS", "12"))
DIM = 16
BATCH = 20
CONFIG = {
    "kind": "ivf_fp16",  # the default codec: probing all partitions re-ranks from .vec files
    "seal_threshold": 200,
    "nlist": 16,
    "nprobe": 16,  # every partition: a slot searched by its own vector is the top hit
    "shard_groups": 4,
    "merge_threshold": 3,
    "rebalance_every": 50,
}

COMMON = """
import sys, time
import numpy as np
from rag_memory import Memory

def batch_vectors(b):
    x = np.random.default_rng([7, b]).standard_normal((20, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
"""

WRITER = COMMON + textwrap.dedent("""
    path, seconds = sys.argv[1], float(sys.argv[2])
    mem = Memory.open(path)
    end, b = time.monotonic() + seconds, 1  # batch 0 is stored before both start
    while time.monotonic() < end:
        ids = [f"b{b}-{j}" for j in range(20)]
        mem.add(ids, ids=ids, vectors=batch_vectors(b))
        print("added", b, time.monotonic(), flush=True)
        if b % 2 and b >= 3:
            print("deleting", b - 3, time.monotonic(), flush=True)
            mem.delete([f"b{b - 3}-{j}" for j in range(20)])
            print("deleted", b - 3, time.monotonic(), flush=True)
        if b % 7 == 6:
            mem.compact()
        b += 1
    mem.close()
    print("batches", b, flush=True)
""")

READER = COMMON + textwrap.dedent("""
    path, seconds = sys.argv[1], float(sys.argv[2])
    rng = np.random.default_rng(0)
    end, n, mem = time.monotonic() + seconds, 0, Memory.open(path, read_only=True)
    while time.monotonic() < end:
        try:
            if n % 40 == 39:  # a fresh open beside the writer, too
                mem.close()
                mem = Memory.open(path, read_only=True)
            b = int(rng.integers(0, 10 + n // 4))
            query = batch_vectors(b)[0]
            start = time.monotonic()
            hits = mem.search(query, k=3)
            stop = time.monotonic()
            top = hits[0] if hits else None
            print("search", b, start, stop, top.id if top else "-", top.score if top else 0,
                  flush=True)
        except Exception as exc:
            print("error", type(exc).__name__, str(exc).replace(chr(10), " "), flush=True)
        n += 1
    mem.close()
""")


def _batch_vectors(b: int) -> np.ndarray:
    x = np.random.default_rng([7, b]).standard_normal((BATCH, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_reader_beside_a_compacting_writer_sees_every_acknowledged_state(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m"
    with Memory.create(path, dim=DIM, index=CONFIG) as mem:
        mem.add(
            [f"b0-{j}" for j in range(BATCH)],
            ids=[f"b0-{j}" for j in range(BATCH)],
            vectors=_batch_vectors(0),
        )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def run(script: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", script, str(path), str(SECONDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    writer, reader = run(WRITER), run(READER)
    w_out, w_err = writer.communicate(timeout=SECONDS * 10 + 120)
    r_out, r_err = reader.communicate(timeout=SECONDS * 10 + 120)
    assert writer.returncode == 0, w_err[-3000:]
    assert reader.returncode == 0, r_err[-3000:]
    added, deleting, deleted = {0: 0.0}, {}, {}
    for line in w_out.splitlines():
        event, *fields = line.split()
        if event in ("added", "deleting", "deleted"):
            {"added": added, "deleting": deleting, "deleted": deleted}[event][int(fields[0])] = (
                float(fields[1])
            )
    errors = [line for line in r_out.splitlines() if line.startswith("error")]
    searches = [line.split()[1:] for line in r_out.splitlines() if line.startswith("search")]
    stale, missing, wrong = [], [], []
    for b, start, stop, top, score in searches:
        b, start, stop, score = int(b), float(start), float(stop), float(score)
        found = top == f"b{b}-0"
        if found and not np.isclose(score, 1.0, atol=1e-4):
            wrong.append((b, top, score))
        if top != "-" and not found:  # any other hit must score what its own vector scores
            other, j = (int(x) for x in top[1:].split("-"))
            expected = float(_batch_vectors(other)[j] @ _batch_vectors(b)[0])
            if not np.isclose(score, expected, atol=1e-4):
                wrong.append((b, top, score, expected))
        if b in deleted and deleted[b] < start:
            if found:
                stale.append((b, start))
        elif b in added and added[b] < start and deleting.get(b, np.inf) > stop:
            if not found:
                missing.append((b, start, top))
    report_probe(
        f"reader beside a compacting writer ({SECONDS:.0f} s, searches)",
        len(searches),
        crashes=len(errors),
        lost=len(missing),
        wrong=len(stale) + len(wrong),
    )
    assert len(added) > 20 and len(deleted) > 5, w_out[-2000:]
    assert len(searches) > 100
    assert errors == []
    assert stale == [] and missing == [] and wrong == []


def test_a_reader_whose_shards_the_writer_retired_still_reports_and_rebalances(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m"
    vectors = np.concatenate([_batch_vectors(b) for b in range(30)])
    ids = [f"b{b}-{j}" for b in range(30) for j in range(BATCH)]
    with Memory.create(path, dim=DIM, index=CONFIG) as writer:
        writer.add(ids, ids=ids, vectors=vectors)  # sealed
        with Memory.open(path, read_only=True) as reader:
            assert reader.search(vectors[0], k=1)[0].id == ids[0]
            writer.delete(ids[:BATCH])
            writer.compact()  # retires (deletes) every shard file the reader has open
            assert reader.stats()["slots"] == len(ids) - BATCH
            reader.rebalance()
            assert reader.search(vectors[0], k=1)[0].id != ids[0]
            assert reader.search(vectors[BATCH], k=1)[0].id == ids[BATCH]
            assert reader.stats()["slots"] == len(ids) - BATCH


def test_a_replica_whose_catch_up_failed_tries_again(tmp_path: Path, monkeypatch) -> None:
    """A read-only replica skips the table's counters while its connection has seen no new
    commit (`SlotTable.commit_mark`); a catch-up that fails must not count as seen, or the
    replica would stay behind the writer for good."""
    from rag_memory import StorageError
    from rag_memory.store.slot_table import SlotTable

    vectors = np.eye(DIM, dtype=np.float32)[:2]
    with Memory.create(tmp_path / "m", dim=DIM, cache=None) as writer:
        writer.add(["a"], ids=["a"], vectors=vectors[:1])
        with Memory.open(tmp_path / "m", read_only=True, cache=None) as reader:
            assert [h.id for h in reader.search(vectors[1], k=5)] == ["a"]
            writer.add(["b"], ids=["b"], vectors=vectors[1:])
            snapshot = SlotTable.snapshot

            def fails_once(self, since_version=-1):
                monkeypatch.setattr(SlotTable, "snapshot", snapshot)
                raise StorageError(self.path, "injected: the disk went away for a moment")

            monkeypatch.setattr(SlotTable, "snapshot", fails_once)
            try:
                reader.search(vectors[1], k=5)
            except StorageError:
                pass
            else:
                raise AssertionError("the injected failure did not reach the search")
            assert [h.id for h in reader.search(vectors[1], k=5)] == ["b", "a"]
            assert [h.id for h in reader.search(vectors[1], k=5)] == ["b", "a"]  # marked now
