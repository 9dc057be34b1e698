"""`Answer`, what a generation returns: the text, the slots it read and how long it took."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..types import Hit


@dataclass(frozen=True)
class Answer:
    """One generated answer.

    Attributes:
        text: the answer, without the prompt, end-of-turn token or stop string.
        hits: the retrieved slots it read (`Memory.generate`), in retrieval order; empty when
            slots were passed to `Generator.answer` directly.
        weights: the weight of each slot, in the order the slots were given (sum 1).
        fusion: the fusion mode used: "xattn", "mixture" or "concat".
        timings: seconds and counts of this call: retrieval_s (0 without a memory), prefill_s
            (time to first token, slot encoding included), decode_s and decode_tokens (the
            forward passes after the first token: one per further token), decode_tokens_per_s,
            total_s, and the slot cache's slot_cache_hits / slot_cache_misses for this call.
    """

    text: str
    hits: list[Hit] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    fusion: str = "xattn"
    timings: dict[str, Any] = field(default_factory=dict)
