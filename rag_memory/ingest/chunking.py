"""Chunking by the embedder's own tokenizer, so a chunk is exactly what the model can read.

A document whose title and text fit in `max_tokens` stays whole (slot id = document id).
A longer one is cut into windows of text tokens with `overlap` tokens shared between
neighbours (slot ids "<doc id>#<i>"); each chunk's text is cut from the original string by
the tokenizer's character offsets (no detokenisation artefacts) and the title is prepended to
every chunk, as BEIR and MTEB embed documents ("title text").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError
from .records import Document

DEFAULT_OVERLAP = 32


@dataclass(frozen=True)
class Chunk:
    """One slot to embed: its id, the text embedded and stored, and its metadata."""

    id: str
    text: str
    metadata: dict[str, Any]
    line: int  # the source line of its document


class Chunker:
    """Splits Documents with a `tokenizers.Tokenizer` (the Rust tokenizer behind a fast one)."""

    def __init__(self, tokenizer: Any, max_tokens: int, overlap: int = DEFAULT_OVERLAP) -> None:
        if max_tokens < 8:
            raise InvalidInputError(f"max tokens must be at least 8, got {max_tokens}")
        if not 0 <= overlap <= max_tokens // 2:
            raise InvalidInputError(
                f"overlap must be between 0 and max_tokens/2 ({max_tokens // 2}), got {overlap}"
            )
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.overlap = overlap

    @classmethod
    def for_model(
        cls, model: Any, max_tokens: int | None = None, overlap: int = DEFAULT_OVERLAP
    ) -> Chunker:
        """A chunker for a SentenceTransformer or an Embedder (anything with `tokenizer` and
        `max_seq_length`): by default its max_seq_length minus the special
        tokens ([CLS], [SEP]) the model adds around every text."""
        from tokenizers import Tokenizer

        hf = model.tokenizer
        if not getattr(hf, "is_fast", False):
            raise InvalidInputError("chunking needs a fast tokenizer (character offsets)")
        if max_tokens is None:
            max_tokens = int(model.max_seq_length) - hf.num_special_tokens_to_add(False)
        # A private copy: the encoder sets padding/truncation on the model's own tokenizer
        # while this one runs in the reader thread, and a Rust tokenizer is not shareable so.
        tokenizer = Tokenizer.from_str(hf.backend_tokenizer.to_str())
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return cls(tokenizer, max_tokens, overlap)

    def _tokens(self, text: str) -> list[tuple[int, int]]:
        return self.tokenizer.encode(text, add_special_tokens=False).offsets

    def split(self, doc: Document) -> list[Chunk]:
        """The chunks of `doc`, in order. WordPiece splits on whitespace first, so the token
        count of "title text" is the sum of the two counts."""
        title_tokens = len(self._tokens(doc.title)) if doc.title else 0
        offsets = self._tokens(doc.text)
        prefix = f"{doc.title} " if doc.title else ""
        base = {"doc_id": doc.id, "title": doc.title, **doc.metadata}
        if title_tokens + len(offsets) <= self.max_tokens:
            return [Chunk(doc.id, prefix + doc.text, {**base, "chunk": 0}, doc.line)]
        # a long title keeps at least half the window for text (the model truncates the rest)
        window = max(self.max_tokens - title_tokens, self.max_tokens // 2)
        step = max(1, window - min(self.overlap, window // 2))
        chunks: list[Chunk] = []
        start = 0
        while True:
            end = min(start + window, len(offsets))
            piece = doc.text[offsets[start][0] : offsets[end - 1][1]]
            i = len(chunks)
            chunks.append(Chunk(f"{doc.id}#{i}", prefix + piece, {**base, "chunk": i}, doc.line))
            if end == len(offsets):
                return chunks
            start += step
