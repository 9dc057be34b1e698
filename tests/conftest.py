"""Shared fixtures: one loaded embedder per session, small vector memories, SciFact embedded once.

SciFact vectors are cached on disk (RAG_MEMORY_TEST_CACHE, default ~/.cache/rag_memory/tests),
keyed by the corpus file's checksum and the model, so the ~5 minute embedding runs once; the
loader lives in bench/_data.py, shared with the benchmarks.

Helper functions live in tests/helpers.py; this file holds fixtures only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _data import load_scifact  # noqa: E402  (bench/ is on pytest's pythonpath)
from helpers import unit_vectors  # noqa: E402

from rag_memory import Memory  # noqa: E402
from rag_memory.embed import Embedder  # noqa: E402


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
def text_memory(tmp_path: Path, embedder: Embedder) -> Iterator[Memory]:
    with Memory.create(tmp_path / "mem", embedder=embedder) as mem:
        yield mem


@pytest.fixture
def vector_memory(tmp_path: Path) -> Iterator[Memory]:
    """A memory of 200 random 16-d slots with ids s0..s199 and metadata {"n": i, "even": bool}."""
    with Memory.create(tmp_path / "vmem", dim=16) as mem:
        mem.add(
            [f"slot {i}" for i in range(200)],
            ids=[f"s{i}" for i in range(200)],
            metadata=[{"n": i, "even": i % 2 == 0, "group": f"g{i % 5}"} for i in range(200)],
            vectors=unit_vectors(200, 16),
        )
        yield mem


@pytest.fixture(scope="session")
def scifact(embedder: Embedder) -> dict:
    """SciFact corpus (title + " " + text) and train queries, with their embeddings."""
    try:
        return load_scifact(embedder)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
