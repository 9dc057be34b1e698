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
from rag_memory.verify import verify_memory

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


def _kill_while_writing(code: str, path: Path, run: int, rng: random.Random) -> list[str]:
    """Start the writer `code` (argv: path, run), kill -9 it at a random moment once it has
    printed its first line after "ready", and return the lines it printed before dying."""
    proc = _python(code, str(path), str(run))
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
    return lines


def test_kill9_keeps_every_acknowledged_slot(tmp_path: Path, embedder) -> None:
    path = tmp_path / "m"
    Memory.create(path, embedder=embedder).close()
    rng = random.Random(1234)
    acknowledged: list[str] = []
    runs = probe_size("RAG_MEMORY_KILL_RUNS", 20)
    for run in range(runs):
        lines = _kill_while_writing(WRITER, path, run, rng)
        acknowledged += [line.strip() for line in lines if line.strip()]
    assert len(acknowledged) >= 20, "the writer acknowledged too few slots to test anything"
    with Memory.open(path, embedder=embedder) as mem:
        kept = mem.contains(acknowledged)
        slots = mem.get([i for i, ok in zip(acknowledged, kept, strict=True) if ok])
        results = mem.search([s.text for s in slots], k=1, mode="dense")  # itself at cosine 1
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


# Adds (and some upserts) of slots that each carry a unique word, zq<run><counter> (no vowel
# to stem), printed "pending op id=word ..." before each write and "acked" once it returned.
LEXICAL_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from rag_memory import Memory
    path, run = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(run)
    mem = Memory.open(path, lock_timeout=30)
    print("ready", flush=True)
    added, count = [], 0
    while True:
        if added and rng.random() < 0.2:
            op, ids = "upsert", [added[int(rng.integers(len(added)))]]
        else:
            op, ids = "add", [f"r{run}-{count + j}" for j in range(int(rng.integers(1, 4)))]
        words = [f"zq{run:03x}{count + j:06x}" for j in range(len(ids))]
        count += len(ids)
        texts = [f"killtest {w} shared words of slot {i}" for w, i in zip(words, ids)]
        print("pending", op, *[f"{i}={w}" for i, w in zip(ids, words)], flush=True)
        vectors = rng.standard_normal((len(ids), 16)).astype(np.float32)
        getattr(mem, op)(texts, ids=ids, vectors=vectors)
        print("acked", flush=True)
        added += ids if op == "add" else []
""")


class LexicalExpectation:
    """What the lexical writer's printed lines promise: each acknowledged slot's word, the
    words that must find nothing (replaced by an acknowledged upsert, or written by a write
    the kill cut short before it committed) and the run's last, unacknowledged write."""

    def __init__(self) -> None:
        self.words: dict[str, str] = {}  # id -> its word
        self.gone: set[str] = set()
        self.pending: dict[str, str] = {}  # id -> word of the write under way at the kill

    def read(self, lines: list[str]) -> None:
        for line in lines:
            if not line.endswith("\n"):
                break  # cut off by the kill
            fields = line.split()
            if fields[0] == "pending":
                self.pending = dict(pair.split("=") for pair in fields[2:])
            elif fields == ["acked"]:
                self._commit(self.pending)
                self.pending = {}

    def _commit(self, writes: dict[str, str]) -> None:
        for slot_id, word in writes.items():
            if slot_id in self.words:
                self.gone.add(self.words[slot_id])
            self.words[slot_id] = word

    def settle(self, mem: Memory) -> int:
        """Decide from the memory whether the unacknowledged write committed (its words find
        its slots; then it counts as acknowledged) or not (its words find nothing, and an
        upserted slot still has its old word). Returns how many of its slots are neither."""
        writes, self.pending = self.pending, {}
        new = _lexical_ids(mem, list(writes.values()))
        old = _lexical_ids(mem, [self.words.get(i, w) for i, w in writes.items()])
        committed = all(hits == [i] for i, hits in zip(writes, new, strict=True))
        if committed:
            self._commit(writes)
            return 0
        self.gone.update(writes.values())
        kept = [[i] if i in self.words else [] for i in writes]
        return sum(n != [] or o != k for n, o, k in zip(new, old, kept, strict=True))


def _lexical_ids(mem: Memory, queries: list[str], k: int = 5) -> list[list[str]]:
    if not queries:
        return []
    return [[h.id for h in hits] for hits in mem.search(queries, k=k, mode="lexical")]


def test_kill9_keeps_lexical_index_and_slots_in_step(tmp_path: Path) -> None:
    """kill -9 during adds and upserts into an FTS-indexed memory: after every kill, each
    acknowledged slot is found (alone) by lexical search for its unique word, no replaced word
    finds anything, lexical search finds exactly the slots of the table, and FTS5's own
    integrity check agrees with the live rows (`verify_memory` runs it)."""
    path = tmp_path / "m"
    Memory.create(path, dim=16, lexical=True).close()
    rng = random.Random(4321)
    expected = LexicalExpectation()
    runs = probe_size("RAG_MEMORY_KILL_RUNS", 4)
    lost = wrong = 0
    for run in range(runs):
        expected.read(_kill_while_writing(LEXICAL_WRITER, path, run, rng))
        with Memory.open(path, read_only=True) as mem:
            lost += expected.settle(mem)
            ids = list(expected.words)
            found = _lexical_ids(mem, list(expected.words.values()))
            lost += sum(hits != [i] for i, hits in zip(ids, found, strict=True))
            wrong += sum(map(len, _lexical_ids(mem, sorted(expected.gone))))
            # lexical search and the table agree: the word every text holds finds every slot
            table = {s.id for slots, _ in mem.iter_vectors() for s in slots}
            shared = [h.id for h in mem.search("killtest", k=len(mem) + 10, mode="lexical")]
            wrong += sorted(shared) != sorted(table)
            assert all(mem.contains(ids)) and len(table) == len(mem), run
        assert verify_memory(path).ok  # the lexical index row for row and word for word
    report_probe("kill -9 while adding (lexical index)", runs, lost=lost, wrong=wrong)
    assert len(expected.words) >= 20, "the writer acknowledged too few slots to test anything"
    assert expected.gone, "no acknowledged upsert: the replaced-word check tested nothing"
    assert lost == 0 and wrong == 0


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
