"""`eval qa`: answer quality of the generator on a SQuAD-format file (exact match and F1 with
the official SQuAD v1.1 normalisation), recall@k of the gold paragraph and latency, for each
fusion mode next to a closed-book and an oracle baseline, in one run over the same questions.

Fair and cheap by construction: each question is searched once (k hits, by `QAConfig.mode`:
dense, lexical or hybrid, the memory's own default for text), its weights are
computed once (softmax(score / T)), and every fusion mode answers from those same hits and
weights, with slot_keys = the hits' slot addresses so a slot's KV cache is built once and
reused by the other modes and by later questions. Which mode runs first rotates from question
to question, so no mode is always the one that pays for encoding a question's slots.
Closed-book gets no slot; oracle gets the gold paragraph alone with weight 1. Both are plain
prompting (`BASELINE_FUSION`: one slot or none), independent of the fusion under test.
With `kv_int8`, mode "xattn-int8" repeats each xattn call through a second generator that stores
slot KV caches as int8 (same loaded model), and the report counts the answers that changed.

Prompt and post-processing: the question goes to the generator as `QUESTION_TEMPLATE`, which
asks for 1-5 words, because SQuAD answers are short spans and a full-sentence answer scores
a low F1 however right it is. The answer is cut to its first non-empty line and stripped,
nothing more (no matching against the paragraph), so the figures measure the generator.
Besides EM and F1, "match" counts an answer that contains a gold answer (PopQA's accuracy):
a small model that answers in a sentence around the right span scores 0 EM but a match.

The memory holds one slot per paragraph (id "<title>/<index>", metadata {title, paragraph}).
An existing --memory is reused only when it holds exactly this file's paragraphs (same count,
ids and texts, compared slot by slot with the file: cheap at SQuAD's size, and no side file
that could disagree with the slots); otherwise it is refused rather than scored at zero recall.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from tqdm.auto import tqdm

from ..datasets.squad import Paragraph, SquadFile, read_squad
from ..errors import InvalidInputError, UnknownIdError
from ..generate import weights_from_scores
from ..generate.config import DEFAULT_TEMPERATURE
from ..generate.config import FUSIONS as GENERATOR_FUSIONS
from ..hybrid import DEFAULT_TEXT_MODE, SEARCH_MODES
from ..memory import Memory
from ..types import Slot
from . import measure
from .squad import answer_match, exact_match, f1_score

logger = logging.getLogger(__name__)

FUSIONS: tuple[str, ...] = tuple(sorted(GENERATOR_FUSIONS))  # report order
CLOSED_BOOK, ORACLE = "closed-book", "oracle"
INT8 = "xattn-int8"  # xattn with int8 slot KV storage (QAConfig.kv_int8)
BASELINE_FUSION = "concat"  # closed-book and oracle: plain prompting with no slot or one
# Chosen over "{question}\nAnswer with a few words only.", a longer "only the words from the
# context" wording and the bare question on 12 questions outside the seed-0 sample of 200
# (oracle, SmolLM2-135M: F1 19.3 vs 13.4 / 17.5 / 7.9): a small model follows a number best.
QUESTION_TEMPLATE = "{question} Answer in 1-5 words."
_BUILD_BATCH = 64
T = TypeVar("T")  # paragraphs embedded per mem.add call (one progress-bar step)


class Answerer(Protocol):
    """What the runner needs of a generator (rag_memory.generate.Generator, or a test fake)."""

    def answer(
        self,
        question: str,
        slots: Sequence[str],
        weights: Sequence[float],
        fusion: str,
        *,
        slot_keys: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
    ) -> Any: ...


@dataclass(frozen=True)
class QAConfig:
    """Everything that decides the figures of one `eval qa` run (recorded in results.json)."""

    dataset: str  # SQuAD v1.1-format JSON file
    memory: str  # memory of the file's paragraphs; built when absent, checked when present
    out: str  # results folder
    n: int = 200  # questions, a seeded sample (all of them if the file holds fewer)
    seed: int = 0  # picks the questions
    k: int = 5  # hits per question, given to every fusion mode
    mode: str = DEFAULT_TEXT_MODE  # search mode of the k hits: "dense", "lexical" or "hybrid"
    fusions: tuple[str, ...] = FUSIONS  # fusion modes compared (closed-book, oracle always run)
    max_new_tokens: int = 24  # per answer; SQuAD answers are a few tokens
    temperature: float = DEFAULT_TEMPERATURE  # T of the slot weights softmax(score / T)
    model: str | None = None  # generator model name or path; None = SmolLM2-135M-Instruct
    kv_int8: bool = False  # also answer xattn with int8 slot KV (mode INT8), compare answers
    # The generator's on-disk slot KV tier (GeneratorConfig.cache_dir), kept across runs: a
    # sweep over temperatures or search modes then encodes each paragraph once, and a later
    # run's TTFT counts those reads as slot cache hits. None = the RAM tier of this run only.
    slot_cache_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("n", "k", "max_new_tokens"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.mode not in SEARCH_MODES:
            raise InvalidInputError(f"mode must be one of {SEARCH_MODES}, got {self.mode!r}")
        if not self.temperature > 0:
            raise InvalidInputError(f"temperature must be positive, got {self.temperature}")
        unknown = [f for f in self.fusions if f not in FUSIONS]
        if unknown or not self.fusions or len(set(self.fusions)) != len(self.fusions):
            raise InvalidInputError(
                f"fusions must be distinct names out of {list(FUSIONS)}, got {list(self.fusions)}"
            )
        if self.kv_int8 and "xattn" not in self.fusions:
            raise InvalidInputError("kv_int8 compares with xattn, which is not among the fusions")

    @property
    def modes(self) -> tuple[str, ...]:
        """Every answering mode of the run, in report order."""
        return (CLOSED_BOOK, *self.retrieving_modes, ORACLE)

    @property
    def retrieving_modes(self) -> tuple[str, ...]:
        """The modes that answer from the k hits (every one but closed-book and oracle)."""
        return (*self.fusions, *((INT8,) if self.kv_int8 else ()))


def sample_questions(questions: Sequence[T], n: int, seed: int) -> list[T]:
    """n questions drawn without replacement, in file order. They are the first n of one
    seeded permutation, so a small run's questions are part of a larger run's."""
    order = np.random.default_rng(seed).permutation(len(questions))[:n]
    return [questions[i] for i in sorted(order)]


def clean_answer(text: str) -> str:
    """The generated text's first non-empty line, stripped (the only post-processing)."""
    text = text.strip()
    return text.splitlines()[0].strip() if text else ""


def _build(path: Path, paragraphs: list[Paragraph]) -> None:
    with Memory.create(path) as mem:
        for start in tqdm(
            range(0, len(paragraphs), _BUILD_BATCH), desc="embedding paragraphs", unit="batch"
        ):
            batch = paragraphs[start : start + _BUILD_BATCH]
            mem.add(
                [p.text for p in batch],
                ids=[p.id for p in batch],
                metadata=[{"title": p.title, "paragraph": p.index} for p in batch],
            )


def _stored_paragraphs(mem: Memory, squad: SquadFile) -> dict[str, Slot]:
    """The slot of each of the file's paragraphs; InvalidInputError unless the memory holds
    exactly those paragraphs."""
    paragraphs = squad.paragraphs

    def refuse(problem: str) -> InvalidInputError:
        return InvalidInputError(
            f"{mem.path} {problem} of {squad.path}; point --memory at a "
            f"new folder (or delete this one) to build it from the file"
        )

    if len(mem) != len(paragraphs):
        raise refuse(f"holds {len(mem)} slots, not the {len(paragraphs)} paragraphs")
    try:
        slots = mem.get([p.id for p in paragraphs])
    except UnknownIdError as exc:
        raise refuse(f"lacks slots of the paragraphs ({exc})") from None
    changed = [p.id for p, s in zip(paragraphs, slots, strict=True) if p.text != s.text]
    if changed:
        raise refuse(
            f"holds other texts under {len(changed)} ids (e.g. {changed[0]!r}) than the paragraphs"
        )
    return {s.id: s for s in slots}


def open_paragraph_memory(
    path: Path, squad: SquadFile
) -> tuple[Memory, dict[str, Slot], float | str]:
    """(memory opened read-only, paragraph id -> its slot, build seconds or NA when reused)."""
    seconds: float | str = measure.NA
    if not (path / "manifest.json").exists():
        logger.info(
            "building %s from the %d paragraphs of %s", path, len(squad.paragraphs), squad.path
        )
        _, seconds = measure.timed(lambda: _build(path, squad.paragraphs))
    mem = Memory.open(path, read_only=True)
    try:
        return mem, _stored_paragraphs(mem, squad), seconds
    except BaseException:
        mem.close()
        raise


class GeneratorSettings(Protocol):
    """What an eval config says of its generator (QAConfig, BabiConfig)."""

    @property
    def model(self) -> str | None: ...

    @property
    def temperature(self) -> float: ...

    @property
    def slot_cache_dir(self) -> str | None: ...


def default_generator(
    config: GeneratorSettings, kv_dtype: str = "float16"
) -> tuple[Answerer, dict[str, Any]]:
    """The real generator and its settings for results.json (`Generator` loads torch on first
    access, so it is only touched here)."""
    from ..generate import Generator, GeneratorConfig

    settings = GeneratorConfig(
        model=config.model,
        temperature=config.temperature,
        kv_dtype=kv_dtype,
        cache_dir=config.slot_cache_dir,
    )
    return Generator(settings), asdict(settings)


@dataclass(frozen=True)
class _Call:
    """One mode's generator call for one question."""

    slots: list[str]
    weights: list[float]
    slot_keys: list[str]  # slot addresses: a slot's KV cache entry serves every mode
    fusion: str


def _warm_up(generator: Answerer, fusions: set[str]) -> None:
    """Load the model and run each fusion once before the clock starts (on a made-up slot,
    so no question's slot cache is filled by the warm-up)."""
    for fusion in sorted(fusions):
        generator.answer(
            "What is this?",
            slots=["A warm-up passage."],
            weights=[1.0],
            fusion=fusion,
            max_new_tokens=2,
        )


def run_qa(
    config: QAConfig, generator: Answerer | None = None, int8_generator: Answerer | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the evaluation; returns (results, {mode: time to first token per question, s}).

    `generator` (and, for `kv_int8`, `int8_generator`) default to rag_memory.generate's
    `Generator`; tests pass fakes, so everything but the language model runs without one.
    """
    squad = read_squad(config.dataset)
    questions = sample_questions(squad.questions, config.n, config.seed)
    if generator is None:
        generator, settings = default_generator(config)
        if config.kv_int8:
            int8_generator, _ = default_generator(config, kv_dtype="int8")
    else:
        settings = {"injected": type(generator).__name__}
    modes = config.modes
    answerers: dict[str, Answerer] = dict.fromkeys(modes, generator)
    if config.kv_int8:
        if int8_generator is None:
            raise InvalidInputError("kv_int8 with an injected generator needs an int8_generator")
        answerers[INT8] = int8_generator
    rows: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in modes}
    search_s: list[float] = []
    mem, slots, build_s = open_paragraph_memory(Path(config.memory), squad)
    with mem:
        search = partial(mem.search, k=config.k, mode=config.mode, cache=False)
        search(questions[0].text)  # loads the embedder before the clock starts
        _warm_up(generator, {BASELINE_FUSION, *config.fusions})
        if config.kv_int8:
            _warm_up(answerers[INT8], {"xattn"})
        for i, q in enumerate(tqdm(questions, desc="answering", unit="q")):
            hits, seconds = measure.timed(partial(search, q.text))
            search_s.append(seconds)
            weights = weights_from_scores([h.score for h in hits], config.temperature).tolist()
            gold = slots[q.paragraph_id]
            retrieved = any(h.id == q.paragraph_id for h in hits)
            calls = {
                CLOSED_BOOK: _Call([], [], [], BASELINE_FUSION),
                ORACLE: _Call([gold.text], [1.0], [str(gold.address)], BASELINE_FUSION),
            }
            for fusion in config.fusions:
                calls[fusion] = _Call(
                    [h.text for h in hits], weights, [str(h.address) for h in hits], fusion
                )
            if config.kv_int8:
                calls[INT8] = calls["xattn"]
            for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:
                call = calls[mode]
                ans = answerers[mode].answer(
                    QUESTION_TEMPLATE.format(question=q.text),
                    slots=call.slots,
                    weights=call.weights,
                    fusion=call.fusion,
                    slot_keys=call.slot_keys,
                    max_new_tokens=config.max_new_tokens,
                )
                text = clean_answer(ans.text)
                rows[mode][q.id] = {
                    "answer": text,
                    "output": ans.text,
                    "gold": list(q.answers),
                    "em": exact_match(text, q.answers),
                    "f1": f1_score(text, q.answers),
                    "match": answer_match(text, q.answers),
                    "gold_retrieved": retrieved if mode in config.retrieving_modes else None,
                    "timings": dict(ans.timings),
                }
        memory = {
            "path": config.memory,
            "slots": len(mem),
            "embedder": mem.manifest.embedder,
            "build_seconds": build_s,
        }
    return _results(config, squad, rows, search_s, memory, settings)


def _results(
    config: QAConfig,
    squad: SquadFile,
    rows: dict[str, dict[str, dict[str, Any]]],
    search_s: list[float],
    memory: dict[str, Any],
    settings: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    def score(mode: str, key: str) -> float:  # mean over the questions, in %
        return 100 * float(np.mean([r[key] for r in rows[mode].values()]))

    def timing(mode: str, key: str) -> np.ndarray:  # one of the generator's Answer.timings
        return np.array([r["timings"][key] for r in rows[mode].values()], dtype=np.float64)

    ttft = {mode: timing(mode, "prefill_s") for mode in config.modes}  # time to first token

    recall = float(np.mean([r["gold_retrieved"] for r in rows[config.fusions[0]].values()]))
    scores: dict[str, dict[str, Any]] = {
        mode: {
            "em": score(mode, "em"),
            "f1": score(mode, "f1"),
            "match": score(mode, "match"),
            "recall_at_k": recall if mode in config.retrieving_modes else measure.NA,
            "ttft": measure.latency_summary(ttft[mode]),
            "total": measure.latency_summary(timing(mode, "total_s")),
            "slot_cache_hits": int(timing(mode, "slot_cache_hits").sum()),
            "slot_cache_misses": int(timing(mode, "slot_cache_misses").sum()),
        }
        for mode in config.modes
    }
    results: dict[str, Any] = {
        "task": "qa",
        "config": asdict(config),
        "dataset": {
            "path": str(squad.path),
            "sha256": squad.sha256,
            "articles": squad.articles,
            "paragraphs": len(squad.paragraphs),
            "questions": len(squad.questions),
            "sampled": len(rows[CLOSED_BOOK]),
        },
        "memory": memory,
        "generator": settings,
        "prompt": {
            "question_template": QUESTION_TEMPLATE,
            "baseline_fusion": BASELINE_FUSION,
            "post_processing": "first non-empty line, stripped",
        },
        "modes": list(config.modes),
        "scores": scores,
        "retrieval": {"recall_at_k": recall, "search_latency": measure.latency_summary(search_s)},
        "peak_rss_bytes": measure.peak_rss_bytes(),
        "per_query": rows,
    }
    if {"xattn", "concat"} <= set(config.fusions):
        x, c = scores["xattn"], scores["concat"]
        results["xattn_vs_concat"] = {
            "em_difference": x["em"] - c["em"],
            "f1_difference": x["f1"] - c["f1"],
            "ttft_p50_ratio_concat_over_xattn": measure.ratio(
                c["ttft"]["p50_ms"], x["ttft"]["p50_ms"]
            ),
        }
    if config.kv_int8:
        same = sum(rows[INT8][q]["answer"] == r["answer"] for q, r in rows["xattn"].items())
        results["int8_vs_float16"] = {
            "same_answers": same,
            "questions": len(rows["xattn"]),
            "em_difference": scores[INT8]["em"] - scores["xattn"]["em"],
            "f1_difference": scores[INT8]["f1"] - scores["xattn"]["f1"],
        }
    return results, ttft
