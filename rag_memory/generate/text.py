"""Turning generated token ids into text as they come, with stop strings.

Tokens are decoded as a whole sequence each time (a token alone may be half a UTF-8
character or lack its leading space), and a piece is released only when it cannot change: no
trailing replacement character, and no tail that might grow into a stop string.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class TextAssembler:
    """Collects token ids; `add` returns the text now safe to show, `finish` the rest.

    Args:
        tokenizer: decodes the ids (special tokens skipped).
        stop: strings that end the text; the text is cut before the first one.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: tuple[str, ...]) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.ids: list[int] = []
        self.text = ""
        self.stopped = False
        self._shown = 0

    def add(self, token: int) -> str:
        """Append one token; return the newly final text (possibly empty)."""
        self.ids.append(token)
        # one flat id list decodes to one string (a list comes back only for a batch)
        self.text = cast(str, self.tokenizer.decode(self.ids, skip_special_tokens=True))
        cut = min((i for i in (self.text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.text = self.text[:cut]
            self.stopped = True
            return self._release(len(self.text))
        safe = len(self.text.rstrip("\ufffd"))
        for s in self.stop:  # hold back a tail that could be the start of a stop string
            for n in range(min(len(s) - 1, safe), 0, -1):
                if self.text[:safe].endswith(s[:n]):
                    safe -= n
                    break
        return self._release(safe)

    def finish(self) -> str:
        """The text not yet released (a held-back tail, when no stop string followed)."""
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        if upto <= self._shown:
            return ""
        piece, self._shown = self.text[self._shown : upto], upto
        return piece
