"""Key/value tensors of a block of tokens: encoding the prefix and the slots, assembling caches.

A block's KV is two tensors (layers, kv_heads, tokens, head_dim), one for keys and one for
values, so a slot is stored, quantised and concatenated as two tensors rather than 2 x layers.
A fresh `DynamicCache` is built per query from these tensors; the model appends to the cache
as it decodes, which creates new tensors and never mutates the stored ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..errors import UnsupportedModelError

if TYPE_CHECKING:
    from transformers import DynamicCache

    from .model import LoadedModel


@dataclass(frozen=True)
class KV:
    """Keys and values of one block, each (layers, kv_heads, tokens, head_dim); a batch of
    rows (`stack_rows`) has a batch axis after the layers."""

    keys: torch.Tensor
    values: torch.Tensor

    @property
    def length(self) -> int:
        return self.keys.shape[-2]

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes


def join(blocks: list[KV]) -> KV:
    """Blocks side by side along the token axis (prefix, slot 1, ..., slot k)."""
    if len(blocks) == 1:
        return blocks[0]
    return KV(
        torch.cat([b.keys for b in blocks], dim=-2), torch.cat([b.values for b in blocks], dim=-2)
    )


def stack_rows(rows: list[KV]) -> KV:
    """Rows of equal length as a batch: (layers, batch, kv_heads, tokens, head_dim)."""
    return KV(
        torch.stack([r.keys for r in rows], dim=1), torch.stack([r.values for r in rows], dim=1)
    )


def pad_to(kv: KV, length: int) -> KV:
    """`kv` with zero keys/values appended up to `length` tokens (the caller masks them)."""
    extra = length - kv.length
    if extra <= 0:
        return kv
    zeros = kv.keys.new_zeros((*kv.keys.shape[:-2], extra, kv.keys.shape[-1]))
    return KV(torch.cat([kv.keys, zeros], dim=-2), torch.cat([kv.values, zeros], dim=-2))


def cache_from(kv: KV, batch: int = 1) -> DynamicCache:
    """A fresh DynamicCache over `kv`: (layers, heads, tokens, dim) is shared by `batch` rows;
    (layers, batch, heads, tokens, dim) gives each row its own."""
    from transformers import DynamicCache

    keys, values = kv.keys, kv.values
    if keys.dim() == 4:
        keys, values = keys.unsqueeze(1), values.unsqueeze(1)
    if keys.shape[1] != batch:
        keys = keys.expand(-1, batch, -1, -1, -1)
        values = values.expand(-1, batch, -1, -1, -1)
    return DynamicCache(list(zip(keys.unbind(0), values.unbind(0), strict=True)))


def _layer_kv(layer: object) -> tuple[torch.Tensor, torch.Tensor]:
    """A filled full-attention cache layer's (keys, values); the per-slot fusions refuse other
    models (`check_layered_attention`), so anything else here is a model they cannot read."""
    keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
    if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
        raise UnsupportedModelError(
            f"cache layer {type(layer).__name__} holds no key/value tensors to store per slot"
        )
    return keys, values


def _stacked(cache: DynamicCache, start: int) -> KV:
    """Tokens from `start` on of a cache's layers, as (layers, batch, heads, tokens, dim)."""
    layers = [_layer_kv(layer) for layer in cache.layers]
    return KV(
        torch.stack([keys[..., start:, :] for keys, _ in layers]),
        torch.stack([values[..., start:, :] for _, values in layers]),
    )


@torch.inference_mode()
def encode_prefix(lm: LoadedModel, ids: list[int]) -> KV:
    """KV of the shared prefix, at positions 0..len-1."""
    from transformers import DynamicCache

    cache = DynamicCache()
    lm.forward(
        cache,
        input_ids=torch.tensor([ids], device=lm.device),
        position_ids=torch.arange(len(ids), device=lm.device)[None],
        logits_to_keep=1,
    )
    kv = _stacked(cache, 0)
    return KV(kv.keys[:, 0].contiguous(), kv.values[:, 0].contiguous())


@torch.inference_mode()
def encode_slots(lm: LoadedModel, prefix: KV, slots: list[list[int]]) -> list[KV]:
    """KV of each slot encoded on its own after the prefix, positions from len(prefix).

    The slots run as one batch, right-padded: under the causal mask a real token never sees
    the pads after it, so no attention mask is needed and each row is cut to its length.
    """
    if not slots:
        return []
    longest = max(len(s) for s in slots)
    pad = slots[0][0]  # any id: padded positions are cut away and never attended
    input_ids = torch.tensor([s + [pad] * (longest - len(s)) for s in slots], device=lm.device)
    start = prefix.length
    positions = torch.arange(start, start + longest, device=lm.device)[None].expand(len(slots), -1)
    cache = cache_from(prefix, len(slots))
    lm.forward(cache, input_ids=input_ids, position_ids=positions, logits_to_keep=1)
    kv = _stacked(cache, start)
    return [
        KV(kv.keys[:, i, :, : len(s)].contiguous(), kv.values[:, i, :, : len(s)].contiguous())
        for i, s in enumerate(slots)
    ]
