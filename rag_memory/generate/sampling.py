"""Choosing the next token from a fused distribution: greedy, or sampled.

Greedy is the default (reproducible answers for evaluation). Sampling follows the usual
recipe of `transformers`' logits warpers, in their order: temperature, then top-k, then top-p
(nucleus sampling, Holtzman et al. 2020, https://arxiv.org/abs/1904.09751), then one draw
from a `torch.Generator` seeded per answer, so a seed gives the same answer every time.
"""

from __future__ import annotations

import torch


class TokenChooser:
    """Picks tokens from log-probabilities.

    Args:
        temperature: 0 = greedy (argmax); > 0 divides the log-probabilities before sampling.
        top_k: sample among the k most likely tokens only; 0 = no limit.
        top_p: sample among the smallest set of most likely tokens whose probability reaches
            top_p; 1.0 = no limit.
        seed: seeds this chooser's draws; None = a fresh random seed.
    """

    def __init__(
        self, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None
    ) -> None:
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self._rng = torch.Generator()
        if seed is None:
            self._rng.seed()
        else:
            self._rng.manual_seed(seed)

    def __call__(self, logp: torch.Tensor) -> int:
        if self.temperature == 0:
            return int(logp.argmax())
        logits = logp.float().cpu() / self.temperature
        if 0 < self.top_k < logits.numel():
            kth = torch.topk(logits, self.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            ordered, order = torch.sort(logits, descending=True)
            probs = torch.softmax(ordered, dim=-1)
            before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens
            logits = logits.index_fill(0, order[before >= self.top_p], float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self._rng))
