"""Run an exported sentence embedding graph (onnx_export.py) with ONNX Runtime on the CPU.

It batches as `SentenceTransformer.encode` does, so that the two compare like for like:
texts sorted by length (longest first) so each batch pads little, the model's own fast
tokenizer with truncation at its max_seq_length, rows put back in the caller's order.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from ..errors import OnnxExportError
from .onnx_export import input_names

logger = logging.getLogger(__name__)


class OnnxEncoder:
    """An ONNX Runtime session over one exported model file, with the source's tokenizer."""

    def __init__(
        self, model_file: Path, source: Path, max_seq_length: int, threads: int | None = None
    ) -> None:
        """`threads`: the session's intra-op threads (None: ONNX Runtime's default, one per
        core; sessions in several processes on one machine then oversubscribe it, each
        one's threads spinning while they wait for the cores the others hold)."""
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(model_file), options, providers=["CPUExecutionProvider"]
            )
            self.tokenizer = AutoTokenizer.from_pretrained(source)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise OnnxExportError(f"cannot load {model_file}: {exc}") from exc
        self.max_seq_length = max_seq_length
        self._inputs = input_names(self.tokenizer)
        dim = self.session.get_outputs()[0].shape[-1]
        if not isinstance(dim, int):
            raise OnnxExportError(f"{model_file}: the output dimension is not fixed")
        self.dim = dim
        # A fast tokenizer called with padding changes its own settings for the call; two
        # threads at once may clash, so calls take turns (the session itself is thread-safe).
        self._tokenize_lock = threading.Lock()

    def _batch(self, texts: list[str]) -> np.ndarray:
        with self._tokenize_lock:
            feed = self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="np",
            )
        out = self.session.run(None, {n: feed[n].astype(np.int64) for n in self._inputs})[0]
        return np.asarray(out, dtype=np.float32)

    def encode(self, texts: list[str], batch_size: int, progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32 rows, not yet normalised."""
        from tqdm.auto import tqdm

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="Batches", disable=not progress):
            rows = order[start : start + batch_size]
            out[rows] = self._batch([texts[i] for i in rows])
        return out
