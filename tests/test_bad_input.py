"""Each kind of bad input raises a RagMemoryError subclass that names the fault, and leaves the
stored memory exactly as it was."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import faiss
import numpy as np
import pytest
from helpers import unit_vectors

from rag_memory import (
    CorruptFileError,
    DuplicateIdError,
    EmbedderMismatchError,
    IndexConfig,
    InvalidFilterError,
    InvalidInputError,
    InvalidVectorError,
    Memory,
    MemoryClosedError,
    MemoryExistsError,
    NotAMemoryError,
    RagMemoryError,
    ReadOnlyError,
    UnknownIdError,
)
from rag_memory.cache import CacheConfig
from rag_memory.index.tiered import TieredIndex
from rag_memory.manifest import read_manifest, write_manifest
from rag_memory.store.filters import MAX_FILTER_DEPTH
from rag_memory.store.slot_table import SlotTable
from rag_memory.validation import MAX_DIM, MAX_METADATA_DEPTH

PROBE = unit_vectors(3, 16, seed=123)


def snapshot(mem: Memory) -> tuple:
    """Everything a user can observe: count, version, and every slot with its address and rank."""
    hits = mem.search(PROBE, k=1000)
    return (
        len(mem),
        mem.stats()["version"],
        [[(h.id, h.address, h.text, h.metadata, round(h.score, 6)) for h in row] for row in hits],
    )


V1 = unit_vectors(1, 16, seed=9)
NAN = V1.copy()
NAN[0, 3] = np.nan
INF = V1.copy()
INF[0, 0] = np.inf


def nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def nested_filter(depth: int) -> dict:
    where: dict = {"n": 1}
    for _ in range(depth - 1):
        where = {"$and": [where]}
    return where


def meta(value: object) -> object:
    return lambda m: m.add(["x"], metadata=[value], vectors=V1)


def where(value: dict) -> object:
    return lambda m: m.search(PROBE, k=3, where=value)


BAD_CALLS = {
    "empty text": (lambda m: m.add([""], vectors=V1), InvalidInputError, "empty"),
    "blank text": (lambda m: m.add(["  \n"], vectors=V1), InvalidInputError, "empty"),
    "no texts": (lambda m: m.add([]), InvalidInputError, "empty"),
    "non-string text": (lambda m: m.add([42], vectors=V1), InvalidInputError, "texts[0]"),
    "None text": (lambda m: m.add(None), InvalidInputError, "texts"),
    "wrong dim": (
        lambda m: m.add(["x"], vectors=unit_vectors(1, 8)),
        InvalidVectorError,
        "(n, 16)",
    ),
    "3-d vectors": (
        lambda m: m.add(["x"], vectors=np.ones((1, 1, 16))),
        InvalidVectorError,
        "shape",
    ),
    "count mismatch": (
        lambda m: m.add(["x", "y"], vectors=V1),
        InvalidVectorError,
        "1 vectors for 2",
    ),
    "nan vector": (lambda m: m.add(["x"], vectors=NAN), InvalidVectorError, "NaN"),
    "inf vector": (lambda m: m.add(["x"], vectors=INF), InvalidVectorError, "NaN or inf"),
    "zero vector": (lambda m: m.add(["x"], vectors=np.zeros((1, 16))), InvalidVectorError, "zeros"),
    "string vector": (lambda m: m.add(["x"], vectors=[["a"] * 16]), InvalidVectorError, "float32"),
    "numeric string vector": (
        lambda m: m.add(["x"], vectors=[["0.5"] * 16]),
        InvalidVectorError,
        "not real numbers",
    ),
    "complex vector": (
        lambda m: m.add(["x"], vectors=np.ones((1, 16), dtype=complex)),
        InvalidVectorError,
        "complex128",
    ),
    "complex query": (
        lambda m: m.search(np.ones(16, dtype=np.complex64), k=1),
        InvalidVectorError,
        "complex64",
    ),
    "bool vector": (
        lambda m: m.add(["x"], vectors=np.ones((1, 16), dtype=bool)),
        InvalidVectorError,
        "bool",
    ),
    "float64 beyond float32": (
        lambda m: m.add(["x"], vectors=np.full((1, 16), 1e300)),
        InvalidVectorError,
        "inf (as float32)",
    ),
    "existing id": (lambda m: m.add(["x"], ids=["s1"], vectors=V1), DuplicateIdError, "s1"),
    "repeated id": (
        lambda m: m.add(["x", "y"], ids=["n", "n"], vectors=unit_vectors(2, 16)),
        DuplicateIdError,
        "'n'",
    ),
    "id count": (lambda m: m.add(["x"], ids=["a", "b"], vectors=V1), InvalidInputError, "2 ids"),
    "empty id": (lambda m: m.add(["x"], ids=[""], vectors=V1), InvalidInputError, "ids[0]"),
    "int id": (lambda m: m.add(["x"], ids=[5], vectors=V1), InvalidInputError, "ids[0]"),
    "bad metadata": (
        lambda m: m.add(["x"], metadata=[{"f": object()}], vectors=V1),
        InvalidInputError,
        "metadata[0]",
    ),
    "nan metadata": (
        lambda m: m.add(["x"], metadata=[{"f": float("nan")}], vectors=V1),
        InvalidInputError,
        "metadata[0]",
    ),
    "metadata count": (
        lambda m: m.add(["x"], metadata=[{}, {}], vectors=V1),
        InvalidInputError,
        "metadata",
    ),
    "upsert without ids": (
        lambda m: m.upsert(["x"], ids=None, vectors=V1),
        InvalidInputError,
        "ids",
    ),
    "batch with one bad row": (
        lambda m: m.add(["ok", ""], vectors=unit_vectors(2, 16)),
        InvalidInputError,
        "texts[1]",
    ),
    "unknown delete": (lambda m: m.delete(["s1", "nope"]), UnknownIdError, "nope"),
    "unknown get": (lambda m: m.get(["nope"]), UnknownIdError, "nope"),
    "empty delete": (lambda m: m.delete([]), InvalidInputError, "empty"),
    "k zero": (lambda m: m.search(PROBE, k=0), InvalidInputError, "k must"),
    "k negative": (lambda m: m.search(PROBE, k=-3), InvalidInputError, "k must"),
    "k float": (lambda m: m.search(PROBE, k=2.5), InvalidInputError, "k must"),
    "query wrong dim": (lambda m: m.search(np.ones(5), k=1), InvalidVectorError, "(n, 16)"),
    "query nan": (lambda m: m.search(NAN, k=1), InvalidVectorError, "NaN"),
    "empty query": (lambda m: m.search("", k=1), InvalidInputError, "empty"),
    "empty query list": (lambda m: m.search([], k=1), InvalidInputError, "empty"),
    "malformed where": (
        lambda m: m.search(PROBE, where={"n": {"$bad": 1}}),
        InvalidInputError,
        "$bad",
    ),
    # issue #12, defect 11: NUL cut by json_each, lone surrogates, deep or huge values
    "NUL id": (lambda m: m.add(["x"], ids=["a\x00b"], vectors=V1), InvalidInputError, "NUL"),
    "NUL id upsert": (
        lambda m: m.upsert(["x"], ids=["s1\x00"], vectors=V1),
        InvalidInputError,
        "ids[0]",
    ),
    "NUL get": (lambda m: m.get(["s1\x00x"]), InvalidInputError, "NUL at position 2"),
    "NUL contains": (lambda m: m.contains(["s2", "s1\x00"]), InvalidInputError, "ids[1]"),
    "NUL delete": (lambda m: m.delete(["s1\x00"]), InvalidInputError, "NUL"),
    "surrogate text": (
        lambda m: m.add(["ok", "a\ud800b"], vectors=unit_vectors(2, 16)),
        InvalidInputError,
        "texts[1] holds a lone surrogate at position 1",
    ),
    "surrogate id": (
        lambda m: m.add(["x"], ids=["\udc00"], vectors=V1),
        InvalidInputError,
        "lone surrogate",
    ),
    "surrogate get": (lambda m: m.get(["s\ud800"]), InvalidInputError, "position 1"),
    "surrogate query": (lambda m: m.search("q\ud800", k=1), InvalidInputError, "surrogate"),
    "surrogate metadata key": (meta({"k\ud800": 1}), InvalidInputError, "metadata[0] key"),
    "surrogate metadata value": (
        meta({"k": ["ok", "\ud800"]}),
        InvalidInputError,
        "metadata[0]['k'][1] holds a lone surrogate",
    ),
    "NUL metadata key": (meta({"a\x00": 1}), InvalidInputError, "NUL"),
    "NUL metadata value": (meta({"k": "a\x00"}), InvalidInputError, "NUL"),
    "deep metadata": (
        meta({"k": nested_list(5000)}),
        InvalidInputError,
        f"deeper than {MAX_METADATA_DEPTH}",
    ),
    "int64 metadata": (meta({"k": 2**63}), InvalidInputError, "int64"),
    "negative int64 metadata": (meta({"k": [-(2**63) - 1]}), InvalidInputError, "int64"),
    "non-string metadata key": (meta({"k": {1: 2}}), InvalidInputError, "metadata[0]['k']"),
    "numpy metadata value": (meta({"k": np.int64(3)}), InvalidInputError, "int64"),
    "deep filter": (
        where(nested_filter(5000)),
        InvalidFilterError,
        f"deeper than {MAX_FILTER_DEPTH}",
    ),
    "deep filter value": (
        where({"n": {"$in": [nested_list(5000)]}}),
        InvalidFilterError,
        "must be str",
    ),
    "int64 filter": (where({"n": {"$gt": 2**64}}), InvalidFilterError, "int64"),
    "int past str limit in filter": (where({"n": 10**5000}), InvalidFilterError, "16610-bit"),
    "int past str limit in metadata": (meta({"k": 10**5000}), InvalidInputError, "int64"),
    "int past str limit as k": (lambda m: m.search(PROBE, k=-(10**5000)), InvalidInputError, "k"),
    "int64 filter list": (where({"n": {"$in": [1, -(2**63) - 1]}}), InvalidFilterError, "int64"),
    "surrogate filter key": (where({"\ud800": 1}), InvalidFilterError, "lone surrogate"),
    "surrogate filter value": (where({"group": "\ud800"}), InvalidFilterError, "surrogate"),
    "NUL filter value": (where({"group": {"$in": ["g1\x00"]}}), InvalidFilterError, "NUL"),
    "NUL filter key": (where({"gr\x00oup": "g1"}), InvalidFilterError, "NUL"),
    "iter_vectors batch -1": (lambda m: m.iter_vectors(batch=-1), InvalidInputError, "batch"),
    "iter_vectors batch 0": (lambda m: m.iter_vectors(batch=0), InvalidInputError, "batch"),
    "iter_vectors batch float": (lambda m: m.iter_vectors(batch=2.0), InvalidInputError, "batch"),
    "nprobe zero": (lambda m: m.search(PROBE, nprobe=0), InvalidInputError, "nprobe"),
    "refine_factor bool": (
        lambda m: m.search(PROBE, refine_factor=True),
        InvalidInputError,
        "refine_factor",
    ),
    "cache not a bool": (lambda m: m.search(PROBE, cache="no"), InvalidInputError, "cache"),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_input_raises_and_changes_nothing(vector_memory: Memory, name: str) -> None:
    call, error, fragment = BAD_CALLS[name]
    before = snapshot(vector_memory)
    with pytest.raises(error) as info:
        call(vector_memory)
    assert isinstance(info.value, RagMemoryError)
    assert fragment in str(info.value), str(info.value)
    assert snapshot(vector_memory) == before


def test_duplicate_in_batch_with_existing_rolls_back(vector_memory: Memory) -> None:
    """A batch whose last id collides writes none of its rows (one transaction)."""
    before = snapshot(vector_memory)
    with pytest.raises(DuplicateIdError):
        vector_memory.add(["a", "b", "c"], ids=["new1", "new2", "s5"], vectors=unit_vectors(3, 16))
    assert snapshot(vector_memory) == before
    with pytest.raises(UnknownIdError):
        vector_memory.get(["new1"])


def test_not_a_memory(tmp_path: Path) -> None:
    with pytest.raises(NotAMemoryError, match="not a rag_memory directory"):
        Memory.open(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(NotAMemoryError):
        Memory.open(tmp_path / "plain")
    with pytest.raises(MemoryExistsError):
        Memory.create(tmp_path / "plain", dim=4)
    assert (tmp_path / "plain" / "notes.txt").read_text() == "hello"


def test_create_refuses_existing_memory(tmp_path: Path) -> None:
    with Memory.create(tmp_path / "m", dim=4) as mem:
        mem.add(["kept"], ids=["k"], vectors=np.eye(1, 4))
    with pytest.raises(MemoryExistsError):
        Memory.create(tmp_path / "m", dim=4)
    with Memory.open(tmp_path / "m") as mem:
        assert mem.get(["k"])[0].text == "kept"


def test_bad_dim(tmp_path: Path) -> None:
    for dim in (0, -1, 2.5, True):
        with pytest.raises(InvalidInputError, match="dim"):
            Memory.create(tmp_path / f"m{dim}", dim=dim)


def test_other_embedder_is_refused(tmp_path: Path) -> None:
    with Memory.create(tmp_path / "m", dim=4):
        pass
    with pytest.raises(EmbedderMismatchError, match="all-MiniLM-L6-v2"):
        Memory.open(tmp_path / "m", embedder="sentence-transformers/all-mpnet-base-v2")


def test_embedder_dim_must_match_memory(tmp_path: Path, embedder) -> None:
    """A memory declared 16-d cannot be fed by the 384-d default model."""
    with Memory.create(tmp_path / "m", embedder=embedder, dim=16) as mem:
        with pytest.raises(EmbedderMismatchError, match="384"):
            mem.add(["text needs the embedder"])
        assert len(mem) == 0


def test_read_only_refuses_writes(vector_memory: Memory) -> None:
    with Memory.open(vector_memory.path, read_only=True) as reader:
        for write in (
            lambda: reader.add(["x"], vectors=V1),
            lambda: reader.delete(["s1"]),
            lambda: reader.upsert(["x"], ids=["s1"], vectors=V1),
        ):
            with pytest.raises(ReadOnlyError):
                write()
        assert len(reader) == 200


# -- create / open arguments: refused before anything is written (issue #12, defect 11) ----
BAD_CREATE = {
    "path None": ({"path": None}, "path"),
    "path int": ({"path": 5}, "path"),
    "path empty": ({"path": ""}, "path"),
    "path NUL": ({"path": "m\x00x"}, "NUL"),
    "path bytes": ({"path": b"m"}, "path"),
    "embedder int": ({"embedder": 5}, "embedder"),
    "embedder empty": ({"embedder": " "}, "embedder"),
    "embedder list": ({"embedder": ["m"]}, "embedder"),
    "device int": ({"device": 0}, "device"),
    "dim 2**31": ({"dim": 2**31}, "dim"),
    "dim over max": ({"dim": MAX_DIM + 1}, f"{MAX_DIM:,}"),
    "dim past str limit": ({"dim": 10**5000}, "cannot be shown"),
    "lock_timeout str": ({"lock_timeout": "x"}, "lock_timeout"),
    "lock_timeout negative": ({"lock_timeout": -1}, "lock_timeout"),
    "lock_timeout nan": ({"lock_timeout": float("nan")}, "lock_timeout"),
    "lock_timeout bool": ({"lock_timeout": True}, "lock_timeout"),
    "index int": ({"index": 5}, "IndexConfig"),
    "index list": ({"index": ["kind"]}, "IndexConfig"),
    "index int keys": ({"index": {1: 2, "a": 3}}, "IndexConfig"),
    "cache int": ({"cache": 5}, "cache"),
    "cache dict int keys": ({"cache": {1: 2}}, "CacheConfig"),
    "ram_bytes str": ({"ram_bytes": "1GB"}, "ram_bytes"),
    "ram_bytes negative": ({"ram_bytes": -1}, "ram_bytes"),
}


@pytest.mark.parametrize("name", list(BAD_CREATE))
def test_create_refuses_bad_arguments_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    kwargs, fragment = BAD_CREATE[name]
    arguments = {"path": tmp_path / "m", "dim": 16, **kwargs}
    monkeypatch.chdir(tmp_path)  # path "" would be the working directory
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(InvalidInputError) as info:
        Memory.create(**arguments)
    assert fragment in str(info.value), str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert len(os.listdir("/proc/self/fd")) == fds  # no descriptor leaked


def test_config_from_dict_refuses_non_dicts() -> None:
    for bad in (5, "kind", [("kind", "auto")], {1: 2, "kind": "auto"}):
        with pytest.raises(InvalidInputError, match="IndexConfig"):
            IndexConfig.from_dict(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="CacheConfig"):
            CacheConfig.from_dict(bad)  # type: ignore[arg-type]


@pytest.fixture
def closed_memory(tmp_path: Path) -> Path:
    """A memory of 20 slots on disk, closed (so this process may open it as the writer)."""
    with Memory.create(tmp_path / "m", dim=16) as mem:
        mem.add(
            [f"t{i}" for i in range(20)],
            ids=[f"c{i}" for i in range(20)],
            vectors=unit_vectors(20, 16),
        )
    return tmp_path / "m"


def _reopens_intact(path: Path) -> None:
    """The memory opens as the writer (no lock left held) with its 20 slots."""
    with Memory.open(path, lock_timeout=0) as mem:
        assert len(mem) == 20 and mem.get(["c7"])[0].text == "t7"


BAD_OPEN = {
    "path None": ({"path": None}, "path"),
    "read_only str": ({"read_only": "yes"}, "read_only"),
    "read_only int": ({"read_only": 1}, "read_only"),
    "lock_timeout str": ({"lock_timeout": "x"}, "lock_timeout"),
    "embedder int": ({"embedder": 5}, "embedder"),
    "device int": ({"device": 0}, "device"),
    "ram_bytes float": ({"ram_bytes": 1.5}, "ram_bytes"),
}


@pytest.mark.parametrize("name", list(BAD_OPEN))
def test_open_refuses_bad_arguments(closed_memory: Path, name: str) -> None:
    kwargs, fragment = BAD_OPEN[name]
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(InvalidInputError) as info:
        Memory.open(**{"path": closed_memory, **kwargs})
    assert fragment in str(info.value), str(info.value)
    assert len(os.listdir("/proc/self/fd")) == fds  # lock_timeout="x" leaked the LOCK fd
    _reopens_intact(closed_memory)


def test_lock_that_is_a_directory(closed_memory: Path) -> None:
    (closed_memory / "LOCK").unlink()
    (closed_memory / "LOCK").mkdir()
    with pytest.raises(CorruptFileError, match="LOCK: is a directory"):
        Memory.open(closed_memory)
    with Memory.open(closed_memory, read_only=True) as reader:  # readers take no lock
        assert len(reader) == 20


@pytest.mark.parametrize("part", [TieredIndex, SlotTable], ids=["index", "table"])
def test_failing_close_still_releases_the_lock(
    closed_memory: Path, monkeypatch: pytest.MonkeyPatch, part: type
) -> None:
    """Inside `with`, a close() that raised kept the writer lock until the process died."""

    def fail(self: object) -> None:
        raise OSError("injected close failure")

    monkeypatch.setattr(part, "close", fail)
    with pytest.raises(OSError, match="injected"):
        with Memory.open(closed_memory) as mem:
            pass
    monkeypatch.undo()
    with pytest.raises(MemoryClosedError):
        mem.search(PROBE, k=1)
    _reopens_intact(closed_memory)


def test_huge_k_returns_every_slot(vector_memory: Memory) -> None:
    """k = 2**40 allocated k results per query (a MemoryError; 5e7 took 5.4 GB): k is bounded
    by the slots that can answer."""
    every = vector_memory.search(PROBE, k=200)
    assert [[h.id for h in r] for r in vector_memory.search(PROBE, k=2**40)] == [
        [h.id for h in r] for r in every
    ]
    evens = vector_memory.search(PROBE, k=2**40, where={"even": True}, cache=False)
    assert [len(r) for r in evens] == [100, 100, 100]


def test_huge_refine_factor_is_bounded_by_the_candidates(tmp_path: Path) -> None:
    """IVF-PQ: k * refine_factor candidates, now at most what the probed shards hold; probing
    every partition and re-ranking every candidate is exact."""
    vectors = unit_vectors(3000, 16, seed=4)
    config = IndexConfig(
        kind="ivf_pq", seal_threshold=3000, nlist=16, nprobe=16, pq_m=4, shard_groups=2
    )
    with Memory.create(tmp_path / "pq", dim=16, index=config, cache=None) as mem:
        mem.add([f"t{i}" for i in range(3000)], ids=[f"p{i}" for i in range(3000)], vectors=vectors)
        assert mem.stats()["index"]["kind_chosen"] == "ivf_pq" and not len(mem.index.growing)
        exact = np.argsort(-(PROBE @ vectors.T), axis=1)
        hits = mem.search(PROBE, k=5, refine_factor=2**40)
        assert [[h.id for h in r] for r in hits] == [[f"p{i}" for i in row[:5]] for row in exact]
        every = mem.search(PROBE, k=2**40, refine_factor=2**40)
        assert [len(r) for r in every] == [3000] * 3
        assert sum(len(slots) for slots, _ in mem.iter_vectors(batch=100)) == 3000


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="the treatment of budgets without a GPU")
def test_gpu_budget_without_a_gpu(closed_memory: Path, tmp_path: Path) -> None:
    """On faiss-cpu a GPU budget raised a bare AttributeError once a shard was placed (at
    seal or open): an argument > 0 is refused, a recorded one is 0 here (source "no-gpu")."""
    with pytest.raises(InvalidInputError, match="sees no GPU"):
        Memory.create(tmp_path / "g", dim=16, gpu_bytes=1 << 30)
    assert not (tmp_path / "g").exists()
    with pytest.raises(InvalidInputError, match="gpu_bytes"):
        Memory.open(closed_memory, gpu_bytes=1)
    _reopens_intact(closed_memory)

    path = tmp_path / "built-on-a-gpu-machine"
    Memory.create(path, dim=16, index={"seal_threshold": 300, "nlist": 4, "nprobe": 4}).close()
    recorded = read_manifest(path)
    write_manifest(
        path, dataclasses.replace(recorded, budgets={**recorded.budgets, "gpu_bytes": 1 << 30})
    )
    with Memory.open(path) as mem:
        assert mem.stats()["budgets"]["gpu_bytes"] == 0
        assert mem.stats()["budgets"]["source"]["gpu_bytes"] == "no-gpu"
        vectors = unit_vectors(400, 16, seed=8)
        mem.add([f"n{i}" for i in range(400)], ids=[f"n{i}" for i in range(400)], vectors=vectors)
        assert mem.index.sealed_shards and mem.stats()["tiers"]["gpu"]["shards"] == 0
        assert mem.search(vectors[7], k=1)[0].id == "n7"
    with Memory.open(path, gpu_bytes=0) as mem:
        assert mem.stats()["budgets"]["source"]["gpu_bytes"] == "argument"
    assert read_manifest(path).budgets["gpu_bytes"] == 1 << 30  # kept for a GPU machine
