"""Crash and process safety: acknowledged writes survive kill -9; one writer process at a time;
read-only readers in other processes see the writer's commits."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import probe_size, report_probe, unit_vectors

from rag_memory import Memory, MemoryLockedError

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

WRITER = textwrap.dedent("""
    import sys
    from rag_memory import Memory
    path, run = sys.argv[1], sys.argv[2]
    mem = Memory.open(path, lock_timeout=30)
    mem.search("warm up the embedder", k=1)
    print("ready", flush=True)
    i = 0
    while True:
        slot_id = f"r{run}-{i}"
        mem.add([f"note {slot_id}: kill test slot number {i} of run {run}"], ids=[slot_id])
        print(slot_id, flush=True)
        i += 1
""")


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_kill9_keeps_every_acknowledged_slot(tmp_path: Path, embedder) -> None:
    path = tmp_path / "m"
    Memory.create(path, embedder=embedder).close()
    rng = random.Random(1234)
    acknowledged: list[str] = []
    runs = probe_size("RAG_MEMORY_KILL_RUNS", 20)
    for run in range(runs):
        proc = _python(WRITER, str(path), str(run))
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(proc.stdout,), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not lines and time.monotonic() < deadline:  # kill only once writes are flowing
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        acknowledged += [line.strip() for line in lines if line.strip()]
    assert len(acknowledged) >= 20, "the writer acknowledged too few slots to test anything"
    with Memory.open(path, embedder=embedder) as mem:
        kept = mem.contains(acknowledged)
        slots = mem.get([i for i, ok in zip(acknowledged, kept, strict=True) if ok])
        results = mem.search([s.text for s in slots], k=1)
        found = [hits[0].id for hits in results]
        report_probe(
            "kill -9 while adding (text)",
            runs,
            lost=kept.count(False),
            wrong=sum(f != s.id for f, s in zip(found, slots, strict=True)),
        )
        assert [s.id for s in slots] == acknowledged
        assert len(mem) >= len(acknowledged)
        assert found == acknowledged


def test_second_writer_gets_clear_error(tmp_path: Path) -> None:
    with Memory.create(tmp_path / "m", dim=4):
        with pytest.raises(MemoryLockedError, match="read_only=True"):
            Memory.open(tmp_path / "m")
        child = _python(
            "import sys; from rag_memory import Memory, MemoryLockedError\n"
            "try:\n    Memory.open(sys.argv[1])\n"
            "except MemoryLockedError as e:\n    print('locked:', e)",
            str(tmp_path / "m"),
        )
        out, err = child.communicate(timeout=60)
        assert out.startswith("locked:") and "another process" in out, err


def test_writer_can_wait_for_the_lock(tmp_path: Path) -> None:
    mem = Memory.create(tmp_path / "m", dim=4)
    child = _python(
        "import sys, numpy as np; from rag_memory import Memory\n"
        "m = Memory.open(sys.argv[1], lock_timeout=60)\n"
        "m.add(['from child'], ids=['c'], vectors=np.ones((1, 4)))\nprint(len(m))",
        str(tmp_path / "m"),
    )
    time.sleep(1.5)
    assert child.poll() is None  # still waiting for the lock
    mem.add(["from parent"], ids=["p"], vectors=np.eye(1, 4))
    mem.close()
    out, err = child.communicate(timeout=60)
    assert out.strip() == "2", err


READER = textwrap.dedent("""
    import sys, numpy as np
    from rag_memory import Memory
    mem = Memory.open(sys.argv[1], read_only=True)
    query = np.ones(8, dtype=np.float32)
    for line in sys.stdin:
        print(len(mem), len(mem.search(query, k=1000)), flush=True)
""")


def test_read_only_reader_in_another_process_follows_the_writer(tmp_path: Path) -> None:
    vectors = unit_vectors(300, 8)
    with Memory.create(tmp_path / "m", dim=8) as mem:
        mem.add(
            [f"a{i}" for i in range(100)], ids=[f"a{i}" for i in range(100)], vectors=vectors[:100]
        )
        reader = _python(READER, str(tmp_path / "m"), stdin=subprocess.PIPE)

        def ask() -> str:
            reader.stdin.write("?\n")
            reader.stdin.flush()
            return reader.stdout.readline().strip()

        assert ask() == "100 100"
        mem.add(
            [f"b{i}" for i in range(200)], ids=[f"b{i}" for i in range(200)], vectors=vectors[100:]
        )
        mem.delete([f"a{i}" for i in range(10)])
        assert ask() == "290 290"
        reader.stdin.close()
        assert reader.wait(timeout=60) == 0, reader.stderr.read()
