"""Step-by-step next-token distributions over a prepared context: the engine of every fusion.

A decoder is fed the question block once (`prefill`) and then one generated token at a time
(`step`); each call returns float32 log-probabilities of the next token. `MaskedDecoder` runs
over stored KV blocks with a 4-D additive attention mask and explicit positions (xattn,
mixture); `PlainDecoder` runs an ordinary prompt through the model's own masking (concat).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .kv import KV, cache_from

if TYPE_CHECKING:
    from .model import LoadedModel


class MaskedDecoder:
    """Rows of context KV, each with its own per-column bias, start position and weight.

    The mask handed to the model is (rows, 1, q_len, past + q_len) in the model's dtype:
    `bias` on the context columns (0 = attend plainly, log w = weighted, -inf = hidden), 0 on
    earlier question/answer tokens and causal among the new ones. transformers passes a 4-D
    float mask through untouched, so that causality is built here. -inf becomes
    `finfo(dtype).min`, never -inf itself: a row with every cell -inf gives NaN under sdpa.
    Positions are passed on every call: the default (cache length + arange) would count every
    slot's tokens, while the question must follow the longest slot, not all of them.

    Args:
        lm: the model.
        context: KV of the context, (layers, heads, tokens, dim) for one row or
            (layers, rows, heads, tokens, dim).
        bias: (rows, tokens) float32 additive bias of each context column.
        start: (rows,) position of the first question token in each row.
        log_weights: (rows,) log weight of each row; the next-token distribution is
            sum_r w_r p_r (a single row: its own distribution).
    """

    def __init__(
        self,
        lm: LoadedModel,
        context: KV,
        bias: torch.Tensor,
        start: torch.Tensor,
        log_weights: torch.Tensor,
    ) -> None:
        self.lm = lm
        self.rows = bias.shape[0]
        self.cache = cache_from(context, self.rows)
        # in the model's dtype, -inf already floored, once: every step only appends zeros
        self.bias = bias.clamp_min(torch.finfo(lm.dtype).min).to(lm.device, lm.dtype)
        self.next_pos = start.to(lm.device)
        self.log_weights = log_weights.to(lm.device)

    @torch.inference_mode()
    def forward(self, ids: list[int]) -> torch.Tensor:
        q = len(ids)
        device, dtype = self.lm.device, self.lm.dtype
        floor = torch.finfo(dtype).min
        causal = torch.full((q, q), floor, dtype=dtype, device=device).triu_(1)
        mask = torch.cat(
            [self.bias[:, None, None, :].expand(-1, 1, q, -1), causal.expand(self.rows, 1, q, q)],
            dim=-1,
        )
        positions = self.next_pos[:, None] + torch.arange(q, device=device)
        input_ids = torch.tensor([ids], device=device).expand(self.rows, -1)
        out = self.lm.forward(
            self.cache,
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            logits_to_keep=1,
        )
        self.bias = torch.cat([self.bias, self.bias.new_zeros(self.rows, q)], dim=1)
        self.next_pos = self.next_pos + q
        logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        if self.rows == 1:
            return logp[0]
        return torch.logsumexp(logp + self.log_weights[:, None], dim=0)

    prefill = forward

    def step(self, token: int) -> torch.Tensor:
        return self.forward([token])


class PlainDecoder:
    """An ordinary prompt: the whole token sequence from position 0, the model's own mask."""

    def __init__(self, lm: LoadedModel, prompt: list[int]) -> None:
        from transformers import DynamicCache

        self.lm = lm
        self.prompt = prompt
        self.cache = DynamicCache()
        self.next_pos = 0

    @torch.inference_mode()
    def forward(self, ids: list[int]) -> torch.Tensor:
        device = self.lm.device
        positions = torch.arange(self.next_pos, self.next_pos + len(ids), device=device)[None]
        out = self.lm.forward(
            self.cache,
            input_ids=torch.tensor([ids], device=device),
            position_ids=positions,
            logits_to_keep=1,
        )
        self.next_pos += len(ids)
        return torch.log_softmax(out.logits[0, -1].float(), dim=-1)

    def prefill(self, ids: list[int]) -> torch.Tensor:
        """Runs the prompt given at construction followed by `ids` (the question block)."""
        return self.forward(self.prompt + ids)

    def step(self, token: int) -> torch.Tensor:
        return self.forward([token])
