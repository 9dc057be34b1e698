"""`eval babi`: a memory the model writes while it works, on the bAbI tasks (Weston et al.
2015), the test bed of Memory Networks.

For each story of a task file, its statements are written into a fresh scope of one memory
one at a time in story order, each with its line number as its write time, and each question
is asked at its point in the story, so it reads only what was written before it. (The
statements are embedded once, in batches, and written with `vectors=`: the writes are one per
statement, the embedding is not.) Per task and configuration the run reports:

* supporting-fact recall@k, retrieval alone (no model): all of the line numbers bAbI gives as
  a question's supporting facts are among the top k read, k = their number (or --k);
* answer accuracy: the answer word in the generated answer as a whole word (`eval qa`'s
  answer match), on --n sampled questions per task (the model is slow on a CPU);
* memory reads per question (searches, index queries, slots read, hops) and latency.

Configurations: closed_book (no slot), gold (the supporting facts only, in story order: the
ceiling for this model), concat (the whole story so far in one prompt, the "just use a long
context" baseline), and memory reads: dense; dense+recency; dense+recency+hops (hops = the
number of supporting facts, one fact per hop); hybrid-rrf+recency and
hybrid-rrf+recency+hops (dense and BM25 fused by reciprocal rank, the fusion that did best
here: convex fusion's min-max normalisation over a story's few BM25 matches turns a length
difference of two statements into half the fused scale). The memory configurations answer
from the slots they read (xattn by default) with weights softmax(score / T) of the read's
own scores; the other three are plain prompting (concat of their slots, equal weights, story order).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..datasets.babi import BabiQuestion, Statement, Story, read_babi, task_files
from ..embed import Embedder
from ..errors import InvalidInputError
from ..generate import weights_from_scores
from ..generate.config import DEFAULT_TEMPERATURE
from ..memory import Memory
from ..read_counts import ReadCounts, counting
from ..recall import DEFAULT_MARGIN, HOP_QUERIES
from ..scope import MemoryScope
from ..types import Hit
from . import measure
from .qa import QUESTION_TEMPLATE, Answerer, clean_answer, default_generator, sample_questions
from .squad import answer_match

logger = logging.getLogger(__name__)

CLOSED_BOOK, GOLD, CONCAT = "closed_book", "gold", "concat"
PROMPTED = (CLOSED_BOOK, GOLD, CONCAT)  # plain prompting, no memory read
# Recency half-life in story lines, measured on the training files of tasks 1-3 (README,
# "Memory that changes"): a statement a few lines older has all but lost its bonus.
DEFAULT_HALF_LIFE = 0.5


@dataclass(frozen=True)
class BabiConfig:
    """Settings of one `eval babi` run (the CLI's options)."""

    data: str = "../shared/data/babi-en"
    tasks: tuple[int, ...] = (1, 2, 3)
    split: str | None = None
    n: int = 30
    k: int | None = None
    half_life: float = DEFAULT_HALF_LIFE
    margin: float = DEFAULT_MARGIN
    hop_query: str = "new_words"
    fusion: str = "xattn"
    max_new_tokens: int = 8
    seed: int = 0
    model: str | None = None
    temperature: float = DEFAULT_TEMPERATURE
    slot_cache_dir: str | None = None
    out: str = "results/babi"

    def __post_init__(self) -> None:
        if not self.tasks or any(t < 1 or t > 20 for t in self.tasks):
            raise InvalidInputError(f"tasks must be bAbI task numbers 1-20, got {self.tasks}")
        if self.n < 0 or (self.k is not None and self.k < 1):
            raise InvalidInputError(f"n must be >= 0 and k >= 1, got n={self.n}, k={self.k}")
        if self.hop_query not in HOP_QUERIES:
            raise InvalidInputError(f"hop_query must be one of {HOP_QUERIES}")

    def reads(self, k: int) -> dict[str, dict[str, Any]]:
        """The memory configurations: name -> `search` options for a question of k facts."""
        recency = {"recency_half_life": self.half_life}
        recall = {"margin": self.margin, "hop_query": self.hop_query}
        rrf = {"fusion": "rrf"}  # the fusion measured best here (README, "Memory that changes")
        return {
            "dense": {"mode": "dense"},
            "dense+recency": {"mode": "dense", **recency, "recall": recall},
            "dense+recency+hops": {"mode": "dense", **recency, "hops": k, "recall": recall},
            "hybrid-rrf+recency": {"mode": "hybrid", "hybrid": rrf, **recency, "recall": recall},
            "hybrid-rrf+recency+hops": {
                "mode": "hybrid",
                "hybrid": rrf,
                **recency,
                "hops": k,
                "recall": recall,
            },
        }


@dataclass
class _Tally:
    """One configuration's figures on one task."""

    recalled: list[float] = field(default_factory=list)
    correct: list[float] = field(default_factory=list)
    read_ms: list[float] = field(default_factory=list)
    answer_s: list[float] = field(default_factory=list)
    reads: ReadCounts = field(default_factory=ReadCounts)
    slots_given: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        questions = max(len(self.recalled), 1)
        return {
            "recall": float(np.mean(self.recalled)) if self.recalled else None,
            "questions_read": len(self.recalled),
            "accuracy": 100 * float(np.mean(self.correct)) if self.correct else None,
            "answered": len(self.correct),
            "reads_per_question": {
                name: value / questions for name, value in self.reads.to_dict().items()
            }
            if self.recalled
            else None,
            "slots_in_prompt": float(np.mean(self.slots_given)) if self.slots_given else None,
            "read_latency": measure.latency_summary(np.array(self.read_ms) / 1e3)
            if self.read_ms
            else None,
            "answer_seconds_p50": float(np.median(self.answer_s)) if self.answer_s else None,
        }


def _sampled(stories: list[Story], n: int, seed: int) -> set[tuple[int, int]]:
    """(story, line) of n questions drawn as `eval qa` draws them, for the model."""
    keys = [(s.index, q.line) for s in stories for q in s.questions]
    return set(sample_questions(keys, n, seed))


def _embedded(embedder: Embedder, stories: list[Story]) -> dict[str, np.ndarray]:
    """Each distinct statement's vector, embedded in one batched call."""
    texts = sorted({e.text for s in stories for e in s.events if isinstance(e, Statement)})
    return dict(zip(texts, embedder.encode(texts), strict=True))


def run_babi(
    config: BabiConfig, generator: Answerer | None = None, embedder: Embedder | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the evaluation; returns (results, {config: read latency per question, s}).
    `generator` and `embedder` default to the real ones (tests pass small stand-ins)."""
    files = task_files(Path(config.data), config.tasks, config.split)
    settings: dict[str, Any] = {}
    if generator is None and config.n:
        generator, settings = default_generator(config)
    embedder = embedder or Embedder()
    per_task: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    latencies: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="babi-") as tmp:
        for task, path in files.items():
            stories = read_babi(path)
            vectors = _embedded(embedder, stories)
            with Memory.create(Path(tmp) / f"qa{task}", embedder=embedder, cache=None) as mem:
                tallies = _run_task(
                    config, task, stories, vectors, mem, generator, records, latencies
                )
            per_task[str(task)] = {
                "file": path.name,
                "stories": len(stories),
                "questions": sum(len(s.questions) for s in stories),
                "statements": sum(1 for s in stories for e in s.events if isinstance(e, Statement)),
                "configs": {name: t.summary() for name, t in tallies.items()},
            }
    results = {
        "task": "babi",
        "config": asdict(config),
        "dataset": {"path": config.data, "files": {t: p.name for t, p in files.items()}},
        "generator": settings,
        "prompt": QUESTION_TEMPLATE,
        "tasks": per_task,
        "per_question": records,
    }
    return results, {name: np.array(v) for name, v in latencies.items()}


def _run_task(
    config: BabiConfig,
    task: int,
    stories: list[Story],
    vectors: dict[str, np.ndarray],
    mem: Memory,
    generator: Answerer | None,
    records: list[dict[str, Any]],
    latencies: dict[str, list[float]],
) -> dict[str, _Tally]:
    sampled = _sampled(stories, config.n, config.seed) if generator is not None else set()
    tallies: dict[str, _Tally] = {}
    questions = sum(len(s.questions) for s in stories)
    bar = tqdm(total=questions, desc=f"qa{task}", unit="q")
    for story in stories:
        scope = mem.scope(task=task, story=story.index)
        written: list[Statement] = []
        for event in story.events:
            if isinstance(event, Statement):
                scope.add(
                    event.text,
                    metadata={"line": event.line},
                    vectors=vectors[event.text][None],
                    timestamps=event.line,
                )
                written.append(event)
                continue
            answer = (story.index, event.line) in sampled
            for name, row in _ask(config, scope, event, written, generator, answer).items():
                _count(tallies.setdefault(name, _Tally()), row)
                if row.get("read_ms") is not None:
                    latencies.setdefault(name, []).append(row["read_ms"] / 1e3)
                records.append(
                    {
                        "task": task,
                        "story": story.index,
                        "question": event.text,
                        "answer": ",".join(event.answers),
                        "supporting": list(event.supporting),
                        "config": name,
                        "retrieved": row.get("retrieved"),
                        "prediction": row.get("prediction"),
                    }
                )
            bar.update()
    bar.close()
    return tallies


def _count(tally: _Tally, row: dict[str, Any]) -> None:
    if row.get("retrieved") is not None:
        tally.recalled.append(row["recalled"])
        tally.read_ms.append(row["read_ms"])
        tally.reads.add(row["reads"])
    if row.get("prediction") is not None:
        tally.correct.append(row["correct"])
        tally.answer_s.append(row["answer_s"])
        tally.slots_given.append(row["slots"])


def _ask(
    config: BabiConfig,
    scope: MemoryScope,
    question: BabiQuestion,
    written: list[Statement],
    generator: Answerer | None,
    answer: bool,
) -> dict[str, dict[str, Any]]:
    """Every configuration's read (and, for a sampled question, answer) of one question."""
    k = config.k or len(question.supporting)
    rows: dict[str, dict[str, Any]] = {}
    for name, options in config.reads(k).items():
        with counting() as reads:
            start = time.perf_counter()
            hits = scope.search(question.text, k=k, **options)
            read_ms = (time.perf_counter() - start) * 1e3
        retrieved = [h.metadata["line"] for h in hits]
        rows[name] = {
            "retrieved": retrieved,
            "recalled": float(set(question.supporting) <= set(retrieved[:k])),
            "read_ms": read_ms,
            "reads": reads,
            "hits": hits,
        }
    if not answer or generator is None:
        return rows
    by_line = {s.line: s.text for s in written}
    prompted = {
        CLOSED_BOOK: [],
        GOLD: [by_line[line] for line in sorted(question.supporting)],
        CONCAT: [s.text for s in written],
    }
    for name, slots in prompted.items():
        rows[name] = _answer(config, generator, question, slots, None, "concat")
    for name in config.reads(k):
        read: list[Hit] = rows[name]["hits"]
        rows[name] |= _answer(
            config, generator, question, [h.text for h in read], read, config.fusion
        )
    return rows


def _answer(
    config: BabiConfig,
    generator: Answerer,
    question: BabiQuestion,
    slots: list[str],
    hits: list[Hit] | None,
    fusion: str,
) -> dict[str, Any]:
    if hits is None:  # plain prompting: equal weights keep the story order under concat
        weights = [1.0 / len(slots)] * len(slots) if slots else []
    else:
        weights = weights_from_scores([h.score for h in hits], config.temperature).tolist()
    start = time.perf_counter()
    ans = generator.answer(
        QUESTION_TEMPLATE.format(question=question.text),
        slots=slots,
        weights=weights,
        fusion=fusion,
        slot_keys=None if hits is None else [str(h.address) for h in hits],
        max_new_tokens=config.max_new_tokens,
    )
    prediction = clean_answer(ans.text)
    return {
        "prediction": prediction,
        "correct": answer_match(prediction, question.answers),
        "answer_s": time.perf_counter() - start,
        "slots": len(slots),
    }
