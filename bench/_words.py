"""Seeded synthetic sentences for lexical (BM25) benchmarks and tests: words drawn with Zipf
frequencies from a synthetic vocabulary.

Natural-language word frequencies follow Zipf's law (frequency of the r-th most common word
proportional to 1 / r^s with s near 1; Zipf 1949, Piantadosi 2014 "Zipf's word frequency law
in natural language"), which is what gives BM25 its mix of long posting lists (common words,
low IDF) and short ones (rare words, high IDF). Uniformly drawn words would make every
posting list the same length and every IDF alike. The words are pronounceable consonant-vowel
syllables ("kafo", "ridumo"), each ending in a vowel, so FTS5's Porter stemmer leaves them
distinct, and they are free of FTS5 syntax.
"""

from __future__ import annotations

import numpy as np

_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def synthetic_word(rank: int) -> str:
    """The word of a 0-based frequency rank: the base-70 digits of rank + 70 as syllables (so
    every word has at least two syllables and distinct ranks give distinct words)."""
    digits, value = [], rank + len(_SYLLABLES)
    while value:
        value, digit = divmod(value, len(_SYLLABLES))
        digits.append(_SYLLABLES[digit])
    return "".join(reversed(digits))


class ZipfWords:
    """A vocabulary of `size` synthetic words whose r-th word (from 1) is drawn with
    probability proportional to 1 / r^exponent."""

    def __init__(self, size: int, exponent: float = 1.0) -> None:
        self.size = size
        self.exponent = exponent
        self.words = np.array([synthetic_word(r) for r in range(size)], dtype=object)
        weights = 1.0 / np.arange(1, size + 1, dtype=np.float64) ** exponent
        self.probabilities = weights / weights.sum()

    def describe(self) -> str:
        return f"Zipf(s={self.exponent:g}) over a {self.size:,}-word synthetic vocabulary"

    def sentences(
        self, rng: np.random.Generator, n: int, min_words: int, max_words: int
    ) -> list[str]:
        """`n` sentences of min_words..max_words words (uniform length), words drawn i.i.d."""
        lengths = rng.integers(min_words, max_words + 1, size=n)
        drawn = self.words[rng.choice(self.size, size=int(lengths.sum()), p=self.probabilities)]
        ends = np.cumsum(lengths)
        return [
            " ".join(drawn[end - length : end]) for end, length in zip(ends, lengths, strict=True)
        ]
