"""The generation half of `Memory`'s API: answering a question from the memory's own slots.

`Memory` inherits it; it needs only the memory's `search` and its open check. The generator
itself (model, fusion modes, slot KV cache) lives in `generate/`.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from .errors import GenerationInputError, InvalidInputError
from .generate import Answer, GeneratorConfig
from .generate.stream import PieceStream, drain, with_retrieval
from .read_counts import counting
from .scope import check_scope
from .validation import check_bool, check_ids, is_int

if TYPE_CHECKING:
    from .generate.generator import Generator
    from .hybrid import HybridConfig
    from .read_counts import ReadTotals
    from .recall import RecallConfig
    from .types import Hit, WriteResult

# Metadata of the slots `generate(..., remember=True)` writes back: the role of each
# ("question" / "answer"), that the model wrote it, the ids of the slots the answer read and,
# on the answer, the id of its question.
ROLE_KEY, GENERATED_KEY, READ_KEY, QUESTION_KEY = "role", "generated", "read", "question_id"


class AnswersFromMemory:
    """`generator`, `generate` and `generate_stream` over the inheriting memory's search."""

    def __init__(self) -> None:
        self._generator: Generator | None = None
        self._generator_lock = threading.Lock()

    if TYPE_CHECKING:  # provided by Memory

        def search(
            self,
            query: str,
            k: int = 10,
            where: dict | None = None,
            *,
            mode: str | None = None,
            hybrid: HybridConfig | dict | None = None,
            recency_half_life: float | None = None,
            hops: int = 1,
            recall: RecallConfig | dict | None = None,
        ) -> list[Hit]: ...

        def _check_open(self) -> None: ...

        def _write(self, *args: Any, **kwargs: Any) -> WriteResult: ...

        @property
        def read_totals(self) -> ReadTotals: ...

    @property
    def generator(self) -> Generator:
        """The `Generator` that `generate` uses, created with default settings on first use
        (the model loads at the first answer). Assign a `Generator` to share one loaded model
        and slot KV cache between memories, or a `GeneratorConfig` for other settings."""
        with self._generator_lock:
            if self._generator is None:
                from .generate.generator import Generator

                self._generator = Generator()
            return self._generator

    @generator.setter
    def generator(self, value: Generator | GeneratorConfig) -> None:
        from .generate.generator import Generator

        if isinstance(value, GeneratorConfig):
            value = Generator(value)
        elif not isinstance(value, Generator):
            raise InvalidInputError(
                f"generator must be a Generator or a GeneratorConfig, got {type(value).__name__}"
            )
        with self._generator_lock:
            self._generator = value

    def generate(
        self,
        question: str,
        k: int = 5,
        fusion: str | None = None,
        where: dict | None = None,
        *,
        mode: str | None = None,
        hybrid: HybridConfig | dict | None = None,
        recency_half_life: float | None = None,
        hops: int = 1,
        recall: RecallConfig | dict | None = None,
        remember: bool = False,
        scope: dict[str, Any] | None = None,
        **options: Any,
    ) -> Answer:
        """Answer `question` from the top-k slots (k = 0: closed book, no search).

        `mode`, `hybrid`, `recency_half_life`, `hops` and `recall` go to `search` (None: the
        memory's default for text, hybrid where it has a lexical index). Weights are
        softmax(score / temperature) of the hits' scores: cosines, convex-fused scores (one
        temperature suits both, `DEFAULT_TEMPERATURE` says why), BM25 or RRF-fused scores
        (near one-hot and near-uniform weights); with recency, the recency-adjusted scores.
        The slot KV cache is keyed by slot address, so a slot upserted since is encoded
        afresh. `fusion` is "xattn", "mixture" or "concat" (None: the generator's default);
        `options` go to `Generator.answer` (max_new_tokens, stop). The Answer's `hits` are the
        slots read; its timings include `retrieval_s` and `reads` (the memory reads this
        answer cost: `rag_memory.read_counts.ReadCounts`).

        `remember=True` writes the question and the answer back as two slots (metadata
        `role` "question" / "answer", `generated` True, `read`: the ids of the slots read;
        the answer's `question_id`), in `scope` (the metadata fields of the scope the call
        belongs to; a `MemoryScope` view passes its own), so a later read can use them.
        Their ids are new: a generated slot never overwrites a user's.
        """
        return drain(
            self.generate_stream(
                question,
                k,
                fusion,
                where,
                mode=mode,
                hybrid=hybrid,
                recency_half_life=recency_half_life,
                hops=hops,
                recall=recall,
                remember=remember,
                scope=scope,
                **options,
            )
        )

    def generate_stream(
        self,
        question: str,
        k: int = 5,
        fusion: str | None = None,
        where: dict | None = None,
        *,
        mode: str | None = None,
        hybrid: HybridConfig | dict | None = None,
        recency_half_life: float | None = None,
        hops: int = 1,
        recall: RecallConfig | dict | None = None,
        remember: bool = False,
        scope: dict[str, Any] | None = None,
        **options: Any,
    ) -> PieceStream:
        """As `generate`, yielding the answer's text as it is decoded; the iterator's return
        value (`StopIteration.value`) is the Answer. Searches and checks input at the call;
        with `remember`, the write-back happens when the stream ends."""
        self._check_open()
        if not is_int(k) or k < 0:
            raise GenerationInputError(f"k must be an int >= 0 (0 = closed book), got {k!r}")
        check_bool(remember, "remember")
        scope = None if scope is None else check_scope(scope)
        start = time.perf_counter()
        with counting() as reads:
            hits = (
                self.search(
                    question,
                    k=int(k),
                    where=where,
                    mode=mode,
                    hybrid=hybrid,
                    recency_half_life=recency_half_life,
                    hops=hops,
                    recall=recall,
                )
                if k
                else []
            )
        retrieval_s = time.perf_counter() - start
        self.read_totals.answered(reads)
        pieces = self.generator.stream(
            question,
            [h.text for h in hits],
            fusion=fusion,
            scores=[h.score for h in hits],
            slot_keys=[str(h.address) for h in hits],
            **options,
        )
        answered = with_retrieval(pieces, hits, retrieval_s, reads.to_dict())
        return self._written_back(answered, question, scope) if remember else answered

    def _written_back(
        self, pieces: PieceStream, question: str, scope: dict[str, Any] | None
    ) -> PieceStream:
        """The stream, then the question and the answer stored as generated slots."""
        answer = yield from pieces
        read = [h.id for h in answer.hits]
        question_id, answer_id = check_ids(None, 2)
        texts = [question] + ([answer.text] if answer.text.strip() else [])
        metadata = [
            {ROLE_KEY: "question", GENERATED_KEY: True, READ_KEY: read},
            {ROLE_KEY: "answer", GENERATED_KEY: True, READ_KEY: read, QUESTION_KEY: question_id},
        ]
        self._write(
            texts,
            [question_id, answer_id][: len(texts)],
            metadata[: len(texts)],
            None,
            False,
            scope=scope,
            generated=True,
        )
        return answer
