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
from .validation import is_int

if TYPE_CHECKING:
    from .generate.generator import Generator
    from .hybrid import HybridConfig
    from .types import Hit


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
        ) -> list[Hit]: ...

        def _check_open(self) -> None: ...

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
        **options: Any,
    ) -> Answer:
        """Answer `question` from the top-k slots (k = 0: closed book, no search).

        `mode` and `hybrid` go to `search` (None: the memory's default for text, hybrid where
        it has a lexical index). Weights are softmax(score / temperature) of the hits' scores:
        cosines, convex-fused scores (one temperature suits both, `DEFAULT_TEMPERATURE` says
        why), BM25 or RRF-fused scores (near one-hot and near-uniform weights). The slot KV
        cache is keyed by slot address, so a slot upserted since is encoded afresh. `fusion` is
        "xattn", "mixture" or "concat" (None: the generator's default); `options` go to
        `Generator.answer` (max_new_tokens, stop). The Answer's `hits` are the slots read and
        its timings include `retrieval_s`.
        """
        return drain(
            self.generate_stream(question, k, fusion, where, mode=mode, hybrid=hybrid, **options)
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
        **options: Any,
    ) -> PieceStream:
        """As `generate`, yielding the answer's text as it is decoded; the iterator's return
        value (`StopIteration.value`) is the Answer. Searches and checks input at the call."""
        self._check_open()
        if not is_int(k) or k < 0:
            raise GenerationInputError(f"k must be an int >= 0 (0 = closed book), got {k!r}")
        start = time.perf_counter()
        hits = self.search(question, k=int(k), where=where, mode=mode, hybrid=hybrid) if k else []
        retrieval_s = time.perf_counter() - start
        pieces = self.generator.stream(
            question,
            [h.text for h in hits],
            fusion=fusion,
            scores=[h.score for h in hits],
            slot_keys=[str(h.address) for h in hits],
            **options,
        )
        return with_retrieval(pieces, hits, retrieval_s)
