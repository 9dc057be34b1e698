"""The generator: answers from the top-k slots, fused by weighted cross-attention.

`GeneratorConfig`, `Answer` and `weights_from_scores` import with numpy only; `Generator`
(and torch and transformers behind it) loads on first access, so that scripts which only
compute weights, and `import rag_memory`, stay fast.
"""

from typing import TYPE_CHECKING, Any

from .config import FUSIONS, GeneratorConfig
from .types import Answer
from .weights import attention_bias, weights_from_scores

if TYPE_CHECKING:
    from .generator import Generator

__all__ = [
    "FUSIONS",
    "Answer",
    "Generator",
    "GeneratorConfig",
    "attention_bias",
    "weights_from_scores",
]


def __getattr__(name: str) -> Any:
    if name == "Generator":
        from .generator import Generator

        return Generator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
