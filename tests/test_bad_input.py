"""Each kind of bad input raises a RagMemoryError subclass that names the fault, and leaves the
stored memory exactly as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import unit_vectors

from rag_memory import (
    DuplicateIdError,
    EmbedderMismatchError,
    InvalidInputError,
    InvalidVectorError,
    Memory,
    MemoryExistsError,
    NotAMemoryError,
    RagMemoryError,
    ReadOnlyError,
    UnknownIdError,
)

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
