"""A framework's embedding model as the memory's `Embedder`.

A memory records the name and dimension of the embedder it was built with and refuses another
one at open (`rag_memory.directory`). A LangChain `Embeddings` or a LlamaIndex `BaseEmbedding`
is not a sentence-transformers model, so the adapters wrap it in `FrameworkEmbedder`: it has a
name the manifest records (the framework, the class and its model name), measures its
dimension once with a probe text, and returns validated unit vectors like any `Embedder`.
Queries go through `encode_query`, since frameworks embed a query and a document differently
(instruction-tuned models prefix them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

from ..embed import Embedder
from ..errors import EmbedderMismatchError, InvalidInputError, RagMemoryError
from ..validation import MAX_DIM, check_int, check_vectors

logger = logging.getLogger(__name__)

# The frameworks whose models a manifest may name (`framework:...`, see
# framework_embedder_name): a memory built with one needs that model back to embed.
LANGCHAIN, LLAMA_INDEX = "langchain", "llama_index"
FRAMEWORKS = (LANGCHAIN, LLAMA_INDEX)
# Embedded once to learn the dimension of a model that does not state it.
_PROBE_TEXT = "dimension probe"
# Attributes that name the model behind a framework's embedding class, tried in this order.
_MODEL_ATTRIBUTES = ("model_name", "model", "model_id", "deployment")

EmbedTexts = Callable[[list[str]], Sequence[Sequence[float]]]
EmbedQuery = Callable[[str], Sequence[float]]


def framework_embedder_name(framework: str, model: Any) -> str:
    """`framework:module.Class[:model name]`: what the manifest records, so the memory opens
    again only with the same kind of model (an open with another is an
    EmbedderMismatchError, as for any embedder)."""
    cls = type(model)
    name = f"{framework}:{cls.__module__}.{cls.__qualname__}"
    for attribute in _MODEL_ATTRIBUTES:
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return f"{name}:{value}"
    return name


class FrameworkEmbedder(Embedder):
    """An `Embedder` over a framework's embedding calls: `embed_texts` for documents,
    `embed_query` for queries. `dim` is measured on first use (one query embedded) unless
    given; every output is checked against it."""

    def __init__(
        self,
        name: str,
        embed_texts: EmbedTexts,
        embed_query: EmbedQuery,
        dim: int | None = None,
    ) -> None:
        super().__init__(name)
        self._embed_texts = embed_texts
        self._embed_query = embed_query
        self._dim = None if dim is None else check_int(dim, "dim", maximum=MAX_DIM)
        self._dim_lock = threading.Lock()
        # The memory's dimension, when check_dim came before the first output.
        self._expected_dim: int | None = None

    @property
    def model(self) -> NoReturn:
        raise RagMemoryError(
            f"embedder {self.name!r} is a framework's embedding model, not a "
            "sentence-transformers one"
        )

    @property
    def dim(self) -> int:
        with self._dim_lock:
            if self._dim is None:
                probe = np.asarray(self._embed_query(_PROBE_TEXT), dtype=np.float32)
                if probe.ndim != 1 or not 0 < len(probe) <= MAX_DIM:
                    raise EmbedderMismatchError(
                        f"embedder {self.name!r} gave a query embedding of shape {probe.shape}"
                    )
                self._dim = int(len(probe))
                logger.info("embedder %s gives %d-d vectors", self.name, self._dim)
            return self._dim

    def check_dim(self, expected: int) -> None:
        """Refuse a model whose vectors are not `expected`-d; one not measured yet is checked
        on its first output instead (no probe call for a memory that already knows)."""
        with self._dim_lock:
            if self._dim is None:
                self._expected_dim = expected
                return
        super().check_dim(expected)

    def encode(
        self, texts: list[str], batch_size: int | None = None, progress: bool | None = None
    ) -> np.ndarray:
        """Documents -> an (n, dim) float32 array of unit rows (the framework batches and
        shows its own progress: `batch_size` and `progress` are not used)."""
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise InvalidInputError("Embedder.encode needs a list of strings")
        if not texts:
            return np.empty((0, self.dim), np.float32)
        return self._checked(self._embed_texts(texts), len(texts))

    def encode_query(self, text: str) -> np.ndarray:
        """One query -> its (dim,) float32 unit vector."""
        if not isinstance(text, str):
            raise InvalidInputError(f"a query must be a string, got {type(text).__name__}")
        return self._checked([self._embed_query(text)], 1)[0]

    def _checked(self, vectors: Sequence[Sequence[float]], n: int) -> np.ndarray:
        """Unit rows; a length other than `dim` (a model that changed, or one that does not
        keep its own dimension) is an EmbedderMismatchError, NaN or zeros an
        InvalidVectorError."""
        lengths = sorted({len(v) for v in vectors})
        with self._dim_lock:
            if self._dim is None and len(lengths) == 1:
                self._dim = lengths[0]
            expected, self._expected_dim = self._expected_dim, None
        if expected is not None:
            super().check_dim(expected)
        dim = self.dim
        if lengths != [dim]:
            raise EmbedderMismatchError(
                f"embedder {self.name!r} gave {lengths}-d vectors, not the {dim}-d ones it "
                "gave before"
            )
        return check_vectors(vectors, dim, n, what=f"embeddings of {self.name!r}")


def query_vector(embedder: Embedder, text: str) -> np.ndarray:
    """The (dim,) unit vector of a query: a framework model's query embedding, or what any
    other embedder makes of the text."""
    if isinstance(embedder, FrameworkEmbedder):
        return embedder.encode_query(text)
    return embedder.encode([text])[0]
