"""`Generator`: answers a question from k weighted slots with a causal LM (greedy by default).

It owns the model (loaded on first use), the prompt layout, the shared prefix's KV and the
per-slot KV cache; each call validates its input, gathers slot KVs (from the cache, encoding
only the misses, in batches), builds the fusion mode's decoder and decodes token by token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GenerationInputError, UnknownFusionError
from ..validation import check_int
from . import model as model_loader
from .config import FUSIONS, GeneratorConfig
from .fusion import BUILDERS, NEEDS_SLOT_KV, Decoder, FusionInput
from .kv import KV, encode_prefix, encode_slots
from .prompt import PromptLayout
from .sampling import TokenChooser
from .slot_cache import SlotCache, text_digest
from .stream import PieceStream, drain
from .text import TextAssembler
from .types import Answer
from .weights import check_weights, weights_from_scores

logger = logging.getLogger(__name__)

# Missed slots are encoded this many at a time: batching amortises the per-forward overhead,
# while padding to the longest of a larger batch would waste more than it saves.
_ENCODE_BATCH = 8


@dataclass
class _Call:
    """One call's validated input, and the counters its timings are made from."""

    question: str
    slots: list[str]
    weights: np.ndarray
    fusion: str
    slot_keys: list[str] | None
    max_new_tokens: int
    stop: tuple[str, ...]
    start: float = 0.0  # when generation began (after the model and prefix are ready)
    cache_hits: int = 0
    cache_misses: int = 0


class Generator:
    """A causal LM that answers from retrieved slots (see `GeneratorConfig` for settings).

    The model loads on first use. Calls may come from several threads; the slot KV cache is
    shared by all of them.
    """

    def __init__(self, config: GeneratorConfig | dict[str, Any] | None = None) -> None:
        if isinstance(config, dict):
            config = GeneratorConfig.from_dict(config)
        elif config is None:
            config = GeneratorConfig()
        elif not isinstance(config, GeneratorConfig):
            raise GenerationInputError(
                f"config must be a GeneratorConfig, a dict or None, got {type(config).__name__}"
            )
        self.config = config
        self.slot_cache = SlotCache(
            config.cache_bytes,
            config.kv_dtype,
            config.int8_scale,
            config.cache_dir,
            config.cache_dir_bytes,
        )
        self._lm: model_loader.LoadedModel | None = None
        self._layout: PromptLayout | None = None
        self._prefix: KV | None = None
        self._lock = threading.Lock()

    @property
    def lm(self) -> model_loader.LoadedModel:
        """The loaded model (loaded once, on first use)."""
        with self._lock:
            if self._lm is None:
                if self.config.threads is not None:
                    import torch

                    torch.set_num_threads(self.config.threads)
                self._lm = model_loader.load(
                    self.config.model, self.config.device, self.config.dtype
                )
            return self._lm

    def prompt(self) -> tuple[PromptLayout, KV]:
        """The prompt layout (prefix, slot and question blocks, for this model's tokenizer) and
        the shared prefix's KV, both made on first use and then reused: every fusion mode builds
        its input from them, and code that assembles the same input by hand (plain prompting to
        compare against, slot KVs to inspect) starts from them too."""
        lm = self.lm
        with self._lock:
            if self._layout is None or self._prefix is None:
                self._layout = PromptLayout.build(lm.tokenizer, self.config)
                self._prefix = encode_prefix(lm, list(self._layout.prefix_ids))
            return self._layout, self._prefix

    # -- public calls ------------------------------------------------------------------
    def answer(
        self,
        question: str,
        slots: Sequence[str] | None = None,
        weights: Sequence[float] | np.ndarray | None = None,
        fusion: str | None = None,
        *,
        scores: Sequence[float] | np.ndarray | None = None,
        slot_keys: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> Answer:
        """Answer `question` from `slots` (none = closed book), decoding greedily (or sampling,
        see `GeneratorConfig.sample_temperature`).

        Args:
            question: the question.
            slots: the retrieved texts; order does not matter except for ties under concat.
            weights: one weight >= 0 per slot (normalised here); None = from `scores`, or
                equal weights when both are None. Give weights or scores, not both.
            fusion: "xattn", "mixture" or "concat"; None = `config.fusion`.
            scores: retrieval scores, turned into weights softmax(score / config.temperature).
            slot_keys: a stable id per slot for the KV cache (a memory passes slot addresses);
                None = a digest of each text.
            max_new_tokens: cap on generated tokens; None = `config.max_new_tokens`.
            stop: strings that end the answer; None = `config.stop`.

        Returns:
            The `Answer`; `hits` is empty (slots came without a memory).
        """
        return drain(
            self.stream(
                question,
                slots,
                weights,
                fusion,
                scores=scores,
                slot_keys=slot_keys,
                max_new_tokens=max_new_tokens,
                stop=stop,
            )
        )

    def stream(
        self,
        question: str,
        slots: Sequence[str] | None = None,
        weights: Sequence[float] | np.ndarray | None = None,
        fusion: str | None = None,
        *,
        scores: Sequence[float] | np.ndarray | None = None,
        slot_keys: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> PieceStream:
        """As `answer`, yielding the text as it is decoded; the pieces join to `Answer.text`,
        and the iterator's return value (`StopIteration.value`) is the `Answer`.

        Input is checked at the call, before the first piece is asked for."""
        call = self._check(
            question, slots, weights, fusion, scores, slot_keys, max_new_tokens, stop
        )
        return self._generate(call)

    def next_token_logprobs(
        self,
        question: str,
        slots: Sequence[str] | None = None,
        weights: Sequence[float] | np.ndarray | None = None,
        fusion: str | None = None,
        *,
        scores: Sequence[float] | np.ndarray | None = None,
        slot_keys: Sequence[str] | None = None,
    ) -> np.ndarray:
        """The fused distribution of the answer's first token, as float32 log-probabilities
        over the vocabulary (arguments as for `answer`): for scoring candidate answers and for
        checking one fusion against another."""
        call = self._check(question, slots, weights, fusion, scores, slot_keys, None, None)
        decoder, question_ids = self._decoder(call, *self.prompt())
        return decoder.prefill(question_ids).cpu().numpy()

    def stats(self) -> dict[str, Any]:
        """The model and the slot KV cache's figures."""
        return {
            "model": self.config.model or model_loader.DEFAULT_MODEL,
            "loaded": self._lm is not None,
            "slot_cache": self.slot_cache.stats(),
        }

    # -- internals ---------------------------------------------------------------------
    def _decoder(self, call: _Call, layout: PromptLayout, prefix: KV) -> tuple[Decoder, list[int]]:
        """The fusion mode's decoder over this call's slots, and the question block's ids.
        Slots are tokenised only where they are read: whole for concat, and for the KV-cache
        fusions only those the cache misses."""
        lm = self.lm
        slot_ids: list[list[int]] = []
        slot_kvs: list[KV] = []
        if NEEDS_SLOT_KV[call.fusion]:
            model_loader.check_layered_attention(lm.model, call.fusion)
            slot_kvs = self._slot_kvs(call, lm, layout, prefix)
        else:
            slot_ids = [layout.slot_ids(lm.tokenizer, text) for text in call.slots]
        decoder = BUILDERS[call.fusion](
            lm, FusionInput(list(layout.prefix_ids), prefix, slot_ids, slot_kvs, call.weights)
        )
        return decoder, layout.question_ids(lm.tokenizer, call.question)

    def _generate(self, call: _Call) -> PieceStream:
        layout, prefix = self.prompt()  # a first call's model load is not time to first token
        call.start = time.perf_counter()
        decoder, question_ids = self._decoder(call, layout, prefix)
        text = TextAssembler(self.lm.tokenizer, call.stop)
        choose = TokenChooser(
            self.config.sample_temperature, self.config.top_k, self.config.top_p, self.config.seed
        )
        logp = decoder.prefill(question_ids)
        first = time.perf_counter()
        steps = 0
        while True:
            token = choose(logp)
            if token in layout.stop_ids:
                break
            piece = text.add(token)
            if piece:
                yield piece
            if text.stopped or len(text.ids) >= call.max_new_tokens:
                break
            logp = decoder.step(token)
            steps += 1
        end = time.perf_counter()
        rest = text.finish()
        if rest:
            yield rest
        return self._answer(call, text.text, first, end, steps)

    def _answer(self, call: _Call, text: str, first: float, end: float, steps: int) -> Answer:
        decode_s = end - first
        timings = {
            "retrieval_s": 0.0,
            "prefill_s": first - call.start,
            "decode_s": decode_s,
            "decode_tokens": steps,
            "decode_tokens_per_s": steps / decode_s if decode_s > 0 else 0.0,
            "total_s": end - call.start,
            "slot_cache_hits": call.cache_hits,
            "slot_cache_misses": call.cache_misses,
        }
        return Answer(text, [], call.weights.tolist(), call.fusion, timings)

    def _slot_kvs(
        self, call: _Call, lm: model_loader.LoadedModel, layout: PromptLayout, prefix: KV
    ) -> list[KV]:
        """Each slot's KV: from the cache, or encoded after the prefix and stored."""
        digests = [text_digest(t) for t in call.slots]
        names = call.slot_keys or [f"text:{d}" for d in digests]
        keys = [(lm.key, layout.prefix_hash, name) for name in names]
        found: list[KV | None] = [
            self.slot_cache.get(key, d, lm.dtype, lm.device)
            for key, d in zip(keys, digests, strict=True)
        ]
        slot_ids = {
            i: layout.slot_ids(lm.tokenizer, call.slots[i])
            for i, kv in enumerate(found)
            if kv is None
        }
        missing = sorted(slot_ids, key=lambda i: len(slot_ids[i]))
        call.cache_hits, call.cache_misses = len(found) - len(missing), len(missing)
        for b in range(0, len(missing), _ENCODE_BATCH):
            batch = missing[b : b + _ENCODE_BATCH]
            for i, kv in zip(
                batch, encode_slots(lm, prefix, [slot_ids[i] for i in batch]), strict=True
            ):
                found[i] = self.slot_cache.put(keys[i], digests[i], kv)
        return [kv for kv in found if kv is not None]

    def _check(
        self,
        question: Any,
        slots: Any,
        weights: Any,
        fusion: Any,
        scores: Any,
        slot_keys: Any,
        max_new_tokens: Any,
        stop: Any,
    ) -> _Call:
        """Validate one call's arguments; raises a GenerationInputError subclass naming what is
        wrong."""
        if not isinstance(question, str) or not question.strip():
            raise GenerationInputError(f"question must be a non-empty string, got {question!r}")
        slots = _strings(slots, "slots")
        fusion = self.config.fusion if fusion is None else fusion
        if fusion not in FUSIONS:
            raise UnknownFusionError(f"unknown fusion {fusion!r}; known: {list(FUSIONS)}")
        if weights is not None and scores is not None:
            raise GenerationInputError("give weights or scores, not both")
        if weights is not None:
            w = check_weights(weights, len(slots))
        elif scores is not None:
            w = check_weights(weights_from_scores(scores, self.config.temperature), len(slots))
        else:
            w = np.full(len(slots), 1.0 / len(slots)) if slots else np.empty(0)
        keys = None
        if slot_keys is not None:
            keys = _strings(slot_keys, "slot_keys")
            if len(keys) != len(slots):
                raise GenerationInputError(f"got {len(keys)} slot_keys for {len(slots)} slots")
        n = self.config.max_new_tokens if max_new_tokens is None else max_new_tokens
        n = check_int(n, "max_new_tokens", error=GenerationInputError)
        stops = self.config.stop if stop is None else tuple(_strings(stop, "stop"))
        return _Call(question, slots, w, fusion, keys, n, stops)


def _strings(values: Any, what: str) -> list[str]:
    """A list of non-empty strings (None = empty list); a bare string is refused, since
    iterating it would give characters."""
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise GenerationInputError(f"{what} must be a list of strings, got {type(values).__name__}")
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise GenerationInputError(f"{what}[{i}] must be a non-empty string, got {value!r}")
    return list(values)
