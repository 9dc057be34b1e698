"""The prompt split into blocks that are tokenised separately: prefix, slots, question.

Every fusion mode uses the same blocks and concatenates their token ids, never their text:
joined text tokenises differently at the boundaries, and then xattn with one slot could not
equal plain prompting with it. The prefix P is the chat template up to where the user's
message begins (system turn + user header); each slot is encoded after P, and the question
block carries the rest of the user turn and the assistant header.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .config import GeneratorConfig

# End-of-turn tokens of the common chat formats (ChatML, Gemma, Llama 3, Phi-3), beside EOS:
# an instruct model ends its answer with one of them, not always with its EOS.
_END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>", "<|end|>")
# Stands in for the user message while the chat template is rendered, then split on.
_SENTINEL = "\x00RAG_MEMORY_USER_MESSAGE\x00"


@dataclass(frozen=True)
class PromptLayout:
    """Token ids of the fixed blocks and the templates of the variable ones.

    Attributes:
        prefix_ids: the shared prefix P (system turn and user header).
        suffix_text: what closes the user turn and opens the assistant's (after the question).
        slot_template: one slot's text, "{text}" replaced by the slot.
        question_template: the question's text, "{question}" replaced by it.
        prefix_hash: identifies everything a slot's KV depends on besides the model and the
            slot text (prefix ids and slot template); part of the slot-cache key.
        stop_ids: token ids that end the answer (end of turn, end of text).
    """

    prefix_ids: tuple[int, ...]
    suffix_text: str
    slot_template: str
    question_template: str
    prefix_hash: str
    stop_ids: frozenset[int]

    @classmethod
    def build(cls, tokenizer: PreTrainedTokenizerBase, config: GeneratorConfig) -> PromptLayout:
        """The layout for `tokenizer`: its chat template where it has one, else plain text."""
        if getattr(tokenizer, "chat_template", None):
            messages = [
                {"role": "system", "content": config.system_prompt},
                {"role": "user", "content": _SENTINEL},
            ]
            rendered = cast(  # tokenize=False returns the rendered text
                str,
                tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
            )
            head, tail = rendered.split(_SENTINEL)
        else:
            head, tail = config.system_prompt + "\n\n", "\nAnswer:"
        prefix = _ids(tokenizer, head)
        bos = tokenizer.bos_token_id
        if _adds_bos(tokenizer) and (not prefix or prefix[0] != bos):
            prefix = [bos, *prefix]
        stop = {
            i
            for i in (tokenizer.eos_token_id, *map(tokenizer.convert_tokens_to_ids, _END_OF_TURN))
            if isinstance(i, int) and i != tokenizer.unk_token_id
        }
        digest = hashlib.sha256(json.dumps([prefix, config.slot_template]).encode()).hexdigest()
        return cls(
            tuple(prefix),
            tail,
            config.slot_template,
            config.question_template,
            digest[:16],
            frozenset(stop),
        )

    def slot_ids(self, tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
        """Token ids of one slot block (never empty: the template adds text around the slot)."""
        return _ids(tokenizer, self.slot_template.replace("{text}", text))

    def question_ids(self, tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
        """Token ids of the question block: the question, end of the user turn, assistant
        header. Tokenised apart from the slots (see the module docstring)."""
        return _ids(
            tokenizer, self.question_template.replace("{question}", question) + self.suffix_text
        )


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the model expects a BOS token first: asked of the tokenizer's output, not of its
    `add_bos_token` flag, which a tokenizer saved and reloaded (our GGUF conversion) can lose
    while its post-processor still adds the token; a Gemma prompt without BOS echoes the
    question."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
