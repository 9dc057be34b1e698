"""The fusion modes: how k weighted slots become one next-token distribution.

- `xattn` (default): every slot's KV sits side by side after the shared prefix; the question
  and answer tokens attend to all of them at once with an additive bias log(w_i / max w) on
  slot i's columns (see `weights.attention_bias`). One forward per token whatever k is, and
  slot KVs are reused across questions, so time to first token stays flat in k.
- `mixture` (RAG-Token, Lewis et al. 2020): p(y_t) = sum_i w_i p(y_t | slot_i, question, y<t),
  one batched forward per token with one row per slot, each row seeing only its own slot.
- `concat`: all slots in one ordinary prompt, highest weight first: the usual baseline.

Each mode is a builder in `BUILDERS` that turns a `FusionInput` into a decoder; the generator
asks `NEEDS_SLOT_KV` whether to fetch (or encode) the slots' KVs first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .decoders import MaskedDecoder, PlainDecoder
from .kv import KV, join, pad_to, stack_rows
from .model import LoadedModel
from .weights import attention_bias


@dataclass(frozen=True)
class FusionInput:
    """What every mode is built from.

    Attributes:
        prefix_ids: token ids of the shared prefix P.
        prefix: KV of P (computed once per generator and prompt layout).
        slot_ids: token ids of each slot block, in the order given (concat; empty for the
            fusions that read slot KV caches instead).
        slots: KV of each slot encoded after P (empty for modes that do not need them).
        weights: (k,) float64 weights summing to 1, in the same order.
    """

    prefix_ids: list[int]
    prefix: KV
    slot_ids: list[list[int]]
    slots: list[KV]
    weights: np.ndarray


Decoder = MaskedDecoder | PlainDecoder


def xattn(lm: LoadedModel, x: FusionInput) -> MaskedDecoder:
    """One row over prefix + all slots; slot i's columns biased by log(w_i / max w)."""
    bias = [torch.zeros(x.prefix.length)]
    if x.slots:
        for kv, b in zip(x.slots, attention_bias(x.weights).tolist(), strict=True):
            bias.append(torch.full((kv.length,), b))
    longest = max((kv.length for kv in x.slots), default=0)
    return MaskedDecoder(
        lm,
        join([x.prefix, *x.slots]),
        torch.cat(bias)[None],
        torch.tensor([x.prefix.length + longest]),
        torch.zeros(1),
    )


def mixture(lm: LoadedModel, x: FusionInput) -> MaskedDecoder:
    """One row per slot of weight > 0, each over prefix + its own slot (right-padded to the
    longest, pads hidden); row i's question starts right after its slot, as in plain prompting."""
    rows = [i for i, w in enumerate(x.weights.tolist()) if w > 0]
    if not rows:  # closed book: the prefix alone
        return MaskedDecoder(
            lm,
            x.prefix,
            torch.zeros(1, x.prefix.length),
            torch.tensor([x.prefix.length]),
            torch.zeros(1),
        )
    longest = max(x.slots[i].length for i in rows)
    context = stack_rows([join([x.prefix, pad_to(x.slots[i], longest)]) for i in rows])
    bias = torch.zeros(len(rows), x.prefix.length + longest)
    for r, i in enumerate(rows):
        bias[r, x.prefix.length + x.slots[i].length :] = float("-inf")
    start = torch.tensor([x.prefix.length + x.slots[i].length for i in rows])
    log_weights = torch.tensor(np.log(x.weights[rows]), dtype=torch.float32)
    return MaskedDecoder(lm, context, bias, start, log_weights)


def concat(lm: LoadedModel, x: FusionInput) -> PlainDecoder:
    """Prefix, then the slots' token ids from highest weight to lowest (ties keep their order)."""
    order = sorted(range(len(x.slot_ids)), key=lambda i: -x.weights[i])
    return PlainDecoder(lm, x.prefix_ids + [t for i in order for t in x.slot_ids[i]])


BUILDERS: dict[str, Callable[[LoadedModel, FusionInput], Decoder]] = {
    "xattn": xattn,
    "mixture": mixture,
    "concat": concat,
}
NEEDS_SLOT_KV = {"xattn": True, "mixture": True, "concat": False}
