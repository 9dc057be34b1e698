"""kill -9 during sealing, compaction and rebalancing: the memory reopens with every
acknowledged slot present and searchable, and no orphan shard file left behind."""

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
from helpers import SMALL_IVF, probe_size, report_probe

from rag_memory import Memory
from rag_memory.errors import UnknownIdError

DIM = 16
CONFIG = SMALL_IVF

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from rag_memory import Memory
    path, run, phase = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    mem = Memory.open(path, lock_timeout=30, cache=None, ram_bytes=40_000)
    rng = np.random.default_rng(run)
    i = 0
    while True:
        ids = [f"r{run}-{i}-{j}" for j in range(100)]
        vectors = np.random.default_rng([run, i]).standard_normal((100, 16)).astype("float32")
        if phase == "seal":
            print("begin", flush=True)  # this add crosses the threshold and seals
        mem.add(ids, ids=ids, vectors=vectors)
        print(" ".join(ids), flush=True)
        if phase == "compact" and i % 2:
            print("deleting " + " ".join(ids[:10]), flush=True)  # in doubt until "deleted"
            mem.delete(ids[:10])
            print("deleted " + " ".join(ids[:10]), flush=True)
            print("begin", flush=True)
            mem.compact()
        if phase == "rebalance":
            mem.search(rng.standard_normal((50, 16)).astype("float32"), k=5)
            print("begin", flush=True)
            mem.rebalance()
        i += 1
""")


def vectors_of(slot_id: str) -> np.ndarray:
    run, i, j = (int(part) for part in slot_id[1:].split("-"))  # "r<run>-<batch>-<row>"
    return np.random.default_rng([run, i]).standard_normal((100, DIM)).astype("float32")[j]


def present(mem: Memory, slot_id: str) -> bool:
    try:
        mem.get(slot_id)
    except UnknownIdError:
        return False
    return True


@pytest.mark.parametrize("phase", ["seal", "compact", "rebalance"])
def test_kill9_during_maintenance(tmp_path: Path, phase: str) -> None:
    path = tmp_path / "m"
    Memory.create(path, dim=DIM, index=CONFIG, cache=None).close()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rng = random.Random(phase)
    acked, deleted, in_doubt = [], set(), []
    runs = probe_size("RAG_MEMORY_KILL_RUNS", 20)
    for run in range(runs):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(run), phase],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(proc.stdout,), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        target = rng.randint(1, 3)  # kill inside the 1st..3rd maintenance step
        while sum(line == "begin\n" for line in list(lines)) < target:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        for line in lines:
            if line.startswith("deleting "):
                in_doubt.append(line.split()[1:])
            elif line.startswith("deleted "):
                deleted.update(line.split()[1:])
                in_doubt.pop()
            elif line.strip() != "begin":
                acked += line.split()
    # A delete the kill interrupted may have landed or not, but never in part.
    doubtful = {i for batch in in_doubt for i in batch}
    live = [i for i in acked if i not in deleted and i not in doubtful]
    assert len(live) > 100
    with Memory.open(path, cache=None) as mem:
        kept = mem.contains(live)
        torn = [batch for batch in in_doubt if len({present(mem, i) for i in batch}) != 1]
        queries = np.stack([vectors_of(i) for i in live])
        found = [hits[0].id if hits else None for hits in mem.search(queries, k=1)]
        report_probe(
            f"kill -9 during {phase}",
            runs,
            lost=kept.count(False),
            wrong=len(torn) + sum(f != i for f, i in zip(found, live, strict=True)),
        )
        assert all(kept), "an acknowledged slot was lost"
        assert torn == [], f"a delete landed in part: {torn}"
        assert found == live
        stats = mem.stats()
        sealed = [s for s in stats["shards"] if s["sealed"]]
        assert sealed, "no shard was ever sealed"
        stems = {f"{s['shard_id']:06d}" for s in sealed} | {"codec"}
        assert {p.name.split(".")[0] for p in (path / "shards").iterdir()} == stems
