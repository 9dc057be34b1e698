"""`RemoteMemory` against a live `rag-memory serve` subprocess: the same answers and the same
errors as the in-process `Memory` on the same directory (opened read-only beside the server,
which holds the writer lock), and the bounded load test.

One server serves the whole module: starting it costs an interpreter and imports.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _server import ServedMemory, run_to_end
from helpers import unit_vectors
from server_load import make_memory, print_report, run_load

from rag_memory import Memory
from rag_memory.client import RemoteMemory
from rag_memory.errors import (
    IdAlreadyStoredError,
    InvalidFilterError,
    InvalidInputError,
    InvalidVectorError,
    MemoryClosedError,
    RepeatedIdError,
    UnknownIdError,
)

DIM = 16


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedMemory]:
    path = tmp_path_factory.mktemp("served") / "mem"
    with Memory.create(path, dim=DIM) as mem:  # the slots of conftest's vector_memory
        mem.add(
            [f"slot {i}" for i in range(200)],
            ids=[f"s{i}" for i in range(200)],
            metadata=[{"n": i, "even": i % 2 == 0, "group": f"g{i % 5}"} for i in range(200)],
            vectors=unit_vectors(200, DIM),
        )
    with ServedMemory(path) as server:
        yield server


@pytest.fixture
def remote(served: ServedMemory) -> Iterator[RemoteMemory]:
    with RemoteMemory(served.url) as client:
        yield client


@pytest.fixture
def local(served: ServedMemory) -> Iterator[Memory]:
    with Memory.open(served.directory, read_only=True) as mem:
        yield mem


def test_search_by_vector_equals_in_process(remote: RemoteMemory, local: Memory) -> None:
    queries = unit_vectors(5, DIM, seed=7)
    assert remote.search(queries[0], k=5) == local.search(queries[0], k=5)
    assert remote.search(queries, k=3) == local.search(queries, k=3)
    where = {"$and": [{"even": True}, {"n": {"$lt": 100}}]}
    hits = remote.search(queries[1], k=10, where=where)
    assert hits == local.search(queries[1], k=10, where=where)
    assert all(h.metadata["even"] and h.metadata["n"] < 100 for h in hits)
    assert remote.search(queries[2], k=4, nprobe=2, cache=False) == local.search(
        queries[2], k=4, nprobe=2, cache=False
    )


def test_writes_round_trip(remote: RemoteMemory, local: Memory) -> None:
    vectors = unit_vectors(3, DIM, seed=11)
    assert remote.add(["a", "b"], ids=["w-a", "w-b"], vectors=vectors[:2], ttl=math.inf) == [
        "w-a",
        "w-b",
    ]
    assert remote.upsert("a2", ids="w-a", metadata={"v": 2}, vectors=vectors[2]) == ["w-a"]
    got = remote.get(["w-a", "w-b"])
    assert got == local.get(["w-a", "w-b"])
    assert (got[0].text, got[0].metadata, got[1].expires_at) == ("a2", {"v": 2}, None)
    assert remote.search(vectors[2], k=1)[0].id == "w-a"
    remote.delete(["w-a", "w-b"])
    assert remote.contains(["w-a", "w-b", "s1"]) == [False, False, True]
    assert len(remote) == len(local) == 200
    assert remote.stats()["slots"] == local.stats()["slots"]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m: m.get(["s1", "missing"]), UnknownIdError),
        (lambda m: m.delete(["missing"]), UnknownIdError),
        (lambda m: m.add(["x"], ids=["s1"], vectors=unit_vectors(1, DIM)), IdAlreadyStoredError),
        (
            lambda m: m.add(["x", "y"], ids=["d", "d"], vectors=unit_vectors(2, DIM)),
            RepeatedIdError,
        ),
        (lambda m: m.search(unit_vectors(1, DIM)[0], k=0), InvalidInputError),
        (lambda m: m.search(unit_vectors(1, DIM)[0], where={"$bogus": 1}), InvalidFilterError),
        (lambda m: m.search(np.zeros(DIM + 1, np.float32)), InvalidVectorError),
        (lambda m: m.add(["x"], vectors=np.full((1, DIM), np.nan, np.float32)), InvalidVectorError),
        (lambda m: m.add(["   "], vectors=unit_vectors(1, DIM)), InvalidInputError),
    ],
)
def test_errors_are_the_in_process_classes(
    remote: RemoteMemory, vector_memory: Memory, call, error: type[Exception]
) -> None:
    """Each refusal raises the class and message the same call raises in-process (on a
    writable memory of the same slots), and writes nothing."""
    with pytest.raises(error) as in_process:
        call(vector_memory)
    with pytest.raises(error) as over_http:
        call(remote)
    assert type(over_http.value) is type(in_process.value)
    assert str(over_http.value) == str(in_process.value)
    assert remote.contains(["d", "s1"]) == [False, True]


def test_closed_client_raises(served: ServedMemory) -> None:
    client = RemoteMemory(served.url)
    client.close()
    with pytest.raises(MemoryClosedError):
        client.search(unit_vectors(1, DIM)[0])


def test_scope_view_over_the_client(remote: RemoteMemory) -> None:
    view = remote.scope(user="u1")
    view.add(["mine"], ids=["scoped-1"], vectors=unit_vectors(1, DIM, seed=3))
    try:
        hits = view.search(unit_vectors(1, DIM, seed=3)[0], k=3)
        assert [h.id for h in hits] == ["scoped-1"]
        assert hits[0].metadata == {"user": "u1"}
    finally:
        view.delete(["scoped-1"])


def test_importing_rag_memory_or_the_client_imports_no_server() -> None:
    code = (
        "import sys, rag_memory, rag_memory.client\n"
        "bad = [m for m in ('fastapi', 'starlette', 'uvicorn', 'pydantic') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "import rag_memory.cli\n"
        "assert 'fastapi' not in sys.modules\n"
    )
    done = run_to_end([sys.executable, "-c", code])
    assert done.returncode == 0, done.stderr


def test_serve_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None  # as if the extra were not installed\n"
        "from rag_memory.cli import main\n"
        "main(['serve', sys.argv[1]])\n"
    )
    done = run_to_end([sys.executable, "-c", code, str(tmp_path)])
    assert done.returncode == 1
    assert "pip install 'rag_memory[server]'" in done.stderr


def test_bounded_load(tmp_path: Path) -> None:
    """16 clients, 1,000 mixed requests: no error, every acknowledged write in place through
    the server and on disk after a SIGTERM, and the in-process comparison measured."""
    path = tmp_path / "load"
    make_memory(path, 2000, dim=DIM)
    report = run_load(path, clients=16, requests=1000, dim=DIM, timeout_s=240)
    print_report(report, 16)
    assert report.requests == 1000
    assert report.errors == []
    assert report.acknowledged_writes > 0
    assert report.wrong_via_server == [] and report.wrong_on_disk == []
    assert report.server_exit == 0
    assert all(v > 0 for v in report.search_ratio.values())
