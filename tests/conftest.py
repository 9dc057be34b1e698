"""Shared fixtures: one loaded embedder per session, small vector memories, SciFact embedded once.

SciFact vectors are cached on disk (RAG_MEMORY_TEST_CACHE, default ~/.cache/rag_memory/tests),
keyed by the corpus file's checksum and the model, so the ~5 minute embedding runs once; the
loader lives in bench/_data.py, shared with the benchmarks.

Shared data (SciFact, SQuAD, bAbI) comes from one place, the `shared_data` fixture: the folder
named by RAG_MEMORY_DATA, else ../shared/data beside the repository (where the dev and CI
checkouts keep it). Tests that need it skip with the reason when it is absent. Helper functions
live in tests/helpers.py; this file holds fixtures only.
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

DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder: $RAG_MEMORY_DATA, else <repo>/../shared/data; skips when absent."""
    env = os.environ.get("RAG_MEMORY_DATA")
    path = Path(env) if env else DEFAULT_SHARED_DATA
    if not path.is_dir():
        source = "RAG_MEMORY_DATA" if env else "default <repo>/../shared/data"
        pytest.skip(
            f"shared data not found at {path} ({source}); set RAG_MEMORY_DATA to the folder "
            "holding scifact/, squad-v1.1/, babi-en/"
        )
    return path


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
def scifact(embedder: Embedder, shared_data: Path) -> dict:
    """SciFact corpus (title + " " + text) and train queries, with their embeddings."""
    try:
        return load_scifact(embedder, shared_data / "scifact")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
