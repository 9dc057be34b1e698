"""Streams of answer text: pieces as they are decoded, the `Answer` as the stream's return value.

Kept apart from the generator (no torch here), so `Memory` can wrap a stream without loading
the model's stack at import.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace

from ..types import Hit
from .types import Answer

# Pieces of answer text as they are decoded; the stream's return value is the Answer.
PieceStream = Generator[str, None, Answer]


def drain(pieces: PieceStream, each: Callable[[str], object] | None = None) -> Answer:
    """Run a piece stream to its end, handing each piece to `each`; return its Answer."""
    while True:
        try:
            piece = next(pieces)
        except StopIteration as done:
            return done.value
        if each is not None:
            each(piece)


def with_retrieval(
    pieces: PieceStream, hits: list[Hit], retrieval_s: float, reads: dict[str, int]
) -> PieceStream:
    """A piece stream whose Answer carries the retrieved `hits`, the search's time and the
    memory reads it cost."""
    answer = yield from pieces
    timings = {
        **answer.timings,
        "retrieval_s": retrieval_s,
        "total_s": answer.timings["total_s"] + retrieval_s,
        "reads": reads,
    }
    return replace(answer, hits=hits, timings=timings)
