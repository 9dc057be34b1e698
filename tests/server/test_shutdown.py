"""Stopping a live server under load: kill -9 loses no acknowledged write; SIGTERM answers
every write it received before it exits, so what is on disk is exactly what was acknowledged."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from _server import ServedMemory
from helpers import unit_vectors

from rag_memory import Memory
from rag_memory.client import RemoteMemory
from rag_memory.errors import RemoteError

DIM = 8
WRITERS = 16


def write_until_refused(
    url: str, writer: str, acknowledged: list[str], stop: threading.Event
) -> None:
    """Add one slot per request (upserting every third) until the server stops answering;
    record each id whose call returned."""
    with RemoteMemory(url, timeout=30) as remote:
        n = 0
        while not stop.is_set():
            slot_id = f"{writer}-{n}"
            try:
                if n % 3 == 2:
                    remote.upsert([f"text of {slot_id}"], ids=[slot_id], vectors=_vector(n))
                else:
                    remote.add([f"text of {slot_id}"], ids=[slot_id], vectors=_vector(n))
            except RemoteError:
                return
            acknowledged.append(slot_id)
            n += 1


def _vector(n: int) -> np.ndarray:
    return unit_vectors(1, DIM, seed=n)


def load_then(path: Path, stop_server, run: int = 0) -> tuple[list[str], ServedMemory]:
    """WRITERS clients writing to a server at `path`; once writes flow, `stop_server` ends it
    under them. Returns the ids acknowledged and the server."""
    server = ServedMemory(path)
    acknowledged: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=write_until_refused, args=(server.url, f"r{run}-w{w}", acknowledged, stop)
        )
        for w in range(WRITERS)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop_server(server)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(acknowledged) >= 100
    return acknowledged, server


def stored_ids(path: Path) -> set[str]:
    with Memory.open(path) as mem:  # opens for writing: the lock was released
        return {s.id for s, _ in _slots(mem)}


def _slots(mem: Memory):
    for slots, vectors in mem.iter_vectors():
        yield from zip(slots, vectors, strict=True)


def check_texts(path: Path, ids: list[str]) -> None:
    with Memory.open(path, read_only=True) as mem:
        assert [s.text for s in mem.get(ids)] == [f"text of {i}" for i in ids]


def test_kill9_mid_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    path = tmp_path / "mem"
    Memory.create(path, dim=DIM).close()
    for run in range(2):  # a second kill, of a server reopened on the first one's files
        acknowledged, _ = load_then(path, ServedMemory.kill, run)
        stored = stored_ids(path)
        missing = [i for i in acknowledged if i not in stored]
        assert missing == [], f"run {run}: {len(missing)} acknowledged writes lost"
        check_texts(path, acknowledged)


def test_sigterm_answers_every_write_it_received(tmp_path: Path) -> None:
    path = tmp_path / "mem"
    Memory.create(path, dim=DIM).close()
    exits: list[int] = []
    acknowledged, server = load_then(path, lambda s: exits.append(s.stop()))
    assert exits == [0], server.stderr()
    assert "Traceback" not in server.stderr()
    stored = stored_ids(path)
    assert stored == set(acknowledged)  # nothing lost, nothing committed but unanswered
    check_texts(path, acknowledged)
