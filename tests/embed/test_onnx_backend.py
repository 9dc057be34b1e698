"""The ONNX backend of the embedder: exported once into a cache and reused, written whole or
not at all, agreeing with torch, and falling back to torch where it cannot run.

One export (fp32, then int8 from it) per session, into a temporary cache: the user's cache is
never touched here."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag_memory.embed import Embedder, onnx_export
from rag_memory.embed import embedder as embedder_module
from rag_memory.embed.embedder import BACKEND_ENV, default_model_path
from rag_memory.errors import InvalidInputError, OnnxExportError
from rag_memory.model_cache import MARKER, build_atomically, is_complete

TEXTS = [
    "Aspirin reduces the risk of heart attacks.",
    "x",
    "A much longer text about protein folding and the structure of enzymes in cells. " * 8,
]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the default model exported in both variants (once per session)."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    for variant in onnx_export.VARIANTS:
        onnx_export.exported_model(default_model_path(), variant, cache)
    return cache


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return Embedder(backend="torch").encode(TEXTS)


def onnx_embedder(cache: Path, variant: str = "fp32") -> Embedder:
    return Embedder(backend="onnx", onnx_variant=variant, onnx_cache_dir=cache)


@pytest.mark.parametrize("variant, min_cosine", [("fp32", 1 - 1e-5), ("int8", 0.95)])
def test_vectors_agree_with_torch(
    onnx_cache: Path, torch_vectors: np.ndarray, variant: str, min_cosine: float
) -> None:
    embedder = onnx_embedder(onnx_cache, variant)
    vectors = embedder.encode(TEXTS, batch_size=2)  # two batches, rows put back in order
    assert embedder.backend == "onnx" and embedder.backend_description == f"onnx-{variant}"
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), embedder.dim) == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert ((vectors * torch_vectors).sum(axis=1) >= min_cosine).all()
    assert embedder.name == Embedder(backend="torch").name  # what a manifest records


def test_second_load_reuses_the_export(onnx_cache: Path, monkeypatch) -> None:
    def no_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "_export", no_export)
    monkeypatch.setattr(onnx_export, "_quantize", no_export)
    for variant in onnx_export.VARIANTS:
        assert onnx_export.exported_model(default_model_path(), variant, onnx_cache).is_file()
    assert onnx_embedder(onnx_cache, "int8").encode(["loaded from the cache"]).shape == (1, 384)


def test_incomplete_export_is_made_again(onnx_cache: Path, tmp_path: Path, monkeypatch) -> None:
    """A cached folder whose file is cut short (or whose marker is gone) is not used."""
    cache = tmp_path / "cache"
    shutil.copytree(onnx_cache, cache)
    good = onnx_export.exported_model(default_model_path(), "fp32", onnx_cache)
    target = onnx_export.exported_model(default_model_path(), "fp32", cache)
    with open(target, "r+b") as f:
        f.truncate(1000)
    calls = []

    def copy_export(source: Path, layout: object, folder: Path) -> None:
        calls.append(folder)
        shutil.copy(good, folder / onnx_export.MODEL_FILE)

    monkeypatch.setattr(onnx_export, "_export", copy_export)
    again = onnx_export.exported_model(default_model_path(), "fp32", cache)
    assert again == target and len(calls) == 1 and again.stat().st_size == good.stat().st_size
    (target.parent / MARKER).unlink()
    onnx_export.exported_model(default_model_path(), "fp32", cache)
    assert len(calls) == 2
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_build_is_atomic_and_cleans_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "model-x"
    dead = tmp_path / ".model-x.999999999.abc"  # a killed build's temp folder
    live = tmp_path / f".model-x.{os.getpid()}.def"  # a build still running (this process)
    for folder in (dead, live):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")

    def killed(folder: Path) -> None:
        (folder / "model.onnx").write_bytes(b"half a model")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_atomically(target, "stamp", killed)
    assert not target.exists() and not dead.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]
    build_atomically(target, "stamp", lambda f: (f / "model.onnx").write_bytes(b"whole"))
    assert is_complete(target, "stamp") and not is_complete(target, "other weights")


def test_fallback_to_torch_when_onnx_is_not_installed(monkeypatch, caplog) -> None:
    real = embedder_module.importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "onnxruntime" else real(name, *args)

    monkeypatch.setattr(embedder_module.importlib.util, "find_spec", find_spec)
    with caplog.at_level(logging.INFO, logger="rag_memory.embed.embedder"):
        embedder = Embedder()
        assert embedder.backend == "torch"
    assert "onnxruntime is not installed" in caplog.text
    assert embedder.encode(["still works"]).shape == (1, 384)
    with pytest.raises(OnnxExportError, match="onnxruntime is not installed"):
        _ = Embedder(backend="onnx").backend


def test_fallback_to_torch_when_the_export_fails(tmp_path: Path, monkeypatch, caplog) -> None:
    def broken(*args: object) -> None:
        raise OnnxExportError("exporter exploded")

    monkeypatch.setattr(onnx_export, "_export", broken)
    with caplog.at_level(logging.WARNING, logger="rag_memory.embed.embedder"):
        assert Embedder(onnx_cache_dir=tmp_path).backend == "torch"
    assert "exporter exploded" in caplog.text
    with pytest.raises(OnnxExportError, match="exporter exploded"):
        _ = Embedder(backend="onnx", onnx_cache_dir=tmp_path).backend
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp left


def test_torch_can_be_forced(monkeypatch) -> None:
    assert Embedder(backend="torch").backend == "torch"
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert Embedder().backend == "torch"
    monkeypatch.setenv(BACKEND_ENV, "tensorflow")
    with pytest.raises(InvalidInputError, match="backend"):
        _ = Embedder().backend


def test_one_thread_gives_the_same_vectors(onnx_cache: Path) -> None:
    """`threads` (a Ray build's embedder actors share their machine's cores) changes where
    the session runs, not what it computes."""
    one = Embedder(backend="onnx", onnx_cache_dir=onnx_cache, threads=1)
    np.testing.assert_allclose(
        one.encode(TEXTS), onnx_embedder(onnx_cache).encode(TEXTS), atol=1e-6
    )
    assert one.backend == "onnx"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backend": "tensorflow"}, "backend"),
        ({"backend": 1}, "backend"),
        ({"onnx_variant": "int4"}, "onnx variant"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_backend_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        Embedder(**kwargs)


def test_uncovered_layout_is_refused(tmp_path: Path) -> None:
    """A model with a Dense layer after pooling is not exported: torch runs it."""
    (tmp_path / "modules.json").write_text(
        '[{"path": "", "type": "sentence_transformers.models.Transformer"},'
        ' {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},'
        ' {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]'
    )
    with pytest.raises(OnnxExportError, match="not covered"):
        onnx_export.model_layout(tmp_path)
    with pytest.raises(OnnxExportError, match="not a sentence-transformers folder"):
        onnx_export.model_layout(tmp_path / "nothing")
