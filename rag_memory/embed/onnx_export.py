"""Export a sentence-transformers model folder to ONNX once, and keep it in a cache.

Why ONNX: sentence-transformers' efficiency guide ("Speeding up Inference",
https://sbert.net/docs/sentence_transformer/usage/efficiency.html) measures ONNX Runtime,
and above all its int8 dynamically quantised models, as the fastest way to run these models
on a CPU, and embedding is the dominant cost of every text build and uncached text query.

Why not `SentenceTransformer(..., backend="onnx")`: in sentence-transformers 6 that backend
loads and exports through optimum-onnx (its `[onnx]` extra), whose only release, 0.1.0, pins
transformers<4.58 and optimum~=2.1, while sentence-transformers 6 needs transformers>=5:
installing it would downgrade transformers under every other part of rag_memory. So this
module takes the same three steps with torch and onnxruntime's own tools:

1. export the Transformer and its pooling as one graph with torch's TorchScript exporter
   (eager attention, so that step 2 recognises it), checked against torch on fresh inputs;
2. fuse attention, GELU and LayerNorm with `onnxruntime.transformers.optimizer` (what
   optimum's O2 level applies) for BERT-type models;
3. for the "int8" variant, quantise that graph dynamically with
   `onnxruntime.quantization.quantize_dynamic`: int8 weights per output channel, activations
   quantised on the fly, as sentence-transformers' `export_dynamic_quantized_onnx_model`
   with its avx512_vnni configuration does.

Layout: <cache>/<model name>-<key>-<variant>/model.onnx, where <cache> is the
`cache_dir` argument, else $RAG_MEMORY_ONNX_CACHE, else $RAG_MEMORY_CACHE/onnx (default
~/.cache/rag_memory/onnx), and <key> hashes the weights' names, sizes and mtimes and
EXPORT_VERSION. Each folder is written whole or not at all (rag_memory.model_cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, OnnxExportError
from ..model_cache import build_atomically, cache_root, is_complete, weights_stamp
from ..validation import shown

logger = logging.getLogger(__name__)

VARIANTS = ("fp32", "int8")
ONNX_CACHE_ENV = "RAG_MEMORY_ONNX_CACHE"
MODEL_FILE = "model.onnx"
# Bumped whenever the exported graph changes, so no cache made by older code is reused.
EXPORT_VERSION = 1
_OPSET = 17
# The fp32 export must agree with torch to this cosine on inputs it was not traced on.
_EXPORT_MIN_COSINE = 0.9999
_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
_TORCH_MODULES = "sentence_transformers.models."
_CHECK_TEXTS = [
    "A sentence that is longer than the one the graph was traced on, with more words in it.",
    "Short.",
    "A third text.",
]


@dataclass(frozen=True)
class Layout:
    """What of a sentence-transformers folder the ONNX graph reproduces."""

    pooling: str  # "mean" or "cls"
    max_seq_length: int


def check_variant(variant: Any) -> str:
    if variant not in VARIANTS:
        raise InvalidInputError(f"onnx variant must be one of {VARIANTS}, got {shown(variant)}")
    return str(variant)


def onnx_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else $RAG_MEMORY_ONNX_CACHE, else $RAG_MEMORY_CACHE/onnx."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(ONNX_CACHE_ENV)
    return Path(env) if env else cache_root() / "onnx"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OnnxExportError(f"{path}: cannot read it ({exc})") from exc


def model_layout(source: Path) -> Layout:
    """The pooling and sequence length of the sentence-transformers folder `source`.

    Covered: a Transformer, then mean or CLS pooling, then optionally Normalize (encode
    normalises anyway). Anything else (a Dense layer, max pooling, prompts...) raises
    OnnxExportError, so that the caller runs the model through torch instead.
    """
    modules = _read_json(source / "modules.json") if (source / "modules.json").is_file() else None
    if not isinstance(modules, list) or not modules:
        raise OnnxExportError(f"{source} is not a sentence-transformers folder (no modules.json)")
    kinds = [str(m.get("type", "")).removeprefix(_TORCH_MODULES) for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise OnnxExportError(f"{source}: modules {kinds} are not covered by the ONNX export")
    if modules[0].get("path", "") != "":
        raise OnnxExportError(f"{source}: the Transformer is not at the folder's top level")
    pooling_config = _read_json(source / modules[1]["path"] / "config.json")
    modes = [mode for key, mode in _POOLING.items() if pooling_config.get(key)]
    others = [k for k, v in pooling_config.items() if k.startswith("pooling_mode") and v]
    if len(modes) != 1 or len(others) != 1:
        raise OnnxExportError(f"{source}: pooling {others} is not covered by the ONNX export")
    config = _read_json(source / "sentence_bert_config.json")
    max_len = config.get("max_seq_length") if isinstance(config, dict) else None
    if not isinstance(max_len, int) or max_len <= 0:
        raise OnnxExportError(f"{source}: sentence_bert_config.json has no max_seq_length")
    return Layout(modes[0], max_len)


def exported_model(
    source: Path,
    variant: str = "fp32",
    cache_dir: str | Path | None = None,
    label: str | None = None,
) -> Path:
    """The ONNX file of the model folder `source` in `variant`, exported on first use; its
    cache folder is named after `label` (default: the folder's name).

    A complete cached export is reused as it is; a missing, partial or stale one (other
    weights, older export code) is exported again. Raises OnnxExportError when onnxruntime or
    onnx is missing, the layout is not covered, or the export fails.
    """
    variant = check_variant(variant)
    layout = model_layout(source)
    try:
        import onnx  # noqa: F401  (the exporter, optimizer and quantizer all need it)
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxExportError(f"ONNX Runtime is not usable: {exc}") from exc
    stamp = f"{source.resolve()}|{weights_stamp(source)}|{layout}|export v{EXPORT_VERSION}"
    key = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    name = (label or source.resolve().name).replace("/", "__")
    target = onnx_cache_dir(cache_dir) / f"{name}-{key}-{variant}"
    if not is_complete(target, stamp):
        if variant == "int8":
            fp32 = exported_model(source, "fp32", cache_dir, label)
            logger.warning("quantising %s to int8 once into %s", source, target)
            build_atomically(target, stamp, lambda tmp: _quantize(fp32, tmp / MODEL_FILE))
        else:
            logger.warning("exporting %s to ONNX once into %s (a minute at most)", source, target)
            build_atomically(target, stamp, lambda tmp: _export(source, layout, tmp))
    return target / MODEL_FILE


def _pooled_module(model: Any, pooling: str) -> Any:
    """The torch module exported: the Transformer, then the folder's pooling."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, *rest: Any) -> Any:
            extra = {"token_type_ids": rest[0]} if rest else {}
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, **extra
            ).last_hidden_state
            if pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    return Pooled().eval()


def input_names(tokenizer: Any) -> list[str]:
    """The graph's inputs, in order: ids, mask, and token types where the tokenizer has them."""
    names = ["input_ids", "attention_mask"]
    return names + (["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names else [])


def _export(source: Path, layout: Layout, folder: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        # eager attention: the optimizer fuses its pattern, not that of sdpa
        model = AutoModel.from_pretrained(source, attn_implementation="eager").eval()
    except (OSError, ValueError) as exc:
        raise OnnxExportError(f"cannot load {source} for export: {exc}") from exc
    pooled = _pooled_module(model, layout.pooling)
    names = input_names(tokenizer)
    traced_on = tokenizer(
        ["a trace input", "a second trace input"], padding=True, return_tensors="pt"
    )
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    path = folder / MODEL_FILE
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation notes, not failures
            torch.onnx.export(
                pooled,
                tuple(traced_on[n] for n in names),
                str(path),
                input_names=names,
                output_names=["sentence_embedding"],
                dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
                opset_version=_OPSET,
                dynamo=False,
            )
        if model.config.model_type == "bert":
            _fuse(path, model.config)
        check = tokenizer(_CHECK_TEXTS, padding=True, return_tensors="pt")
        with torch.no_grad():
            expected = pooled(*(check[n] for n in names)).numpy()
        got = _run(path, {n: check[n].numpy() for n in names})
    except OnnxExportError:
        raise
    except Exception as exc:  # the exporter and optimizer raise many kinds
        raise OnnxExportError(f"exporting {source} to ONNX failed: {exc}") from exc
    cosine = _row_cosines(expected, got)
    if cosine.min() < _EXPORT_MIN_COSINE:
        raise OnnxExportError(
            f"the ONNX export of {source} disagrees with torch (cosine {cosine.min():.6f})"
        )


def _fuse(path: Path, config: Any) -> None:
    """Fuse attention, GELU and LayerNorm in place (onnxruntime's transformer optimizer)."""
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(
        str(path),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        opt_level=1,
    )
    logger.info("fused %s", {k: v for k, v in fused.get_fused_operator_statistics().items() if v})
    fused.save_model_to_file(str(path))


def _quantize(fp32: Path, path: Path) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        quantize_dynamic(
            fp32,
            path,
            weight_type=QuantType.QInt8,
            per_channel=True,
            # the fused ops are of onnxruntime's own domain, which shape inference cannot type
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
    except Exception as exc:
        raise OnnxExportError(f"quantising {fp32} to int8 failed: {exc}") from exc


def _run(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {k: v.astype(np.int64) for k, v in feed.items()})[0])


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(axis=1))
