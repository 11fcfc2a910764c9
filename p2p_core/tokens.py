"""Prompts as the model sees them: one entry per context position.

A prompt of `n` chunks fills `n * chunk_len` context positions (77 for CLIP). Each position
holds a token id (or -1 for an embedding vector) and the index of the word it belongs to
(-1 for start, end and padding tokens), so edits can name words while the attention
works on positions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")


def normalise_word(word: str) -> str:
    """Lower case, without leading or trailing punctuation: `Cat,` and `cat` name one word."""
    return PUNCTUATION.sub("", word.lower())


@dataclass(frozen=True)
class PromptTokens:
    """One prompt's tokenization.

    text: the prompt as typed.
    words: the prompt's words in order (as the tokenizer split them).
    token_ids: [length] token id per context position; -1 for an embedding vector.
    token_words: [length] index into `words` per position; -1 for start/end/padding.
    """

    text: str
    words: tuple[str, ...]
    token_ids: tuple[int, ...]
    token_words: tuple[int, ...]
    chunk_len: int = 77
    _keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.token_words):
            raise ValueError("token_ids and token_words must have one entry per position")
        object.__setattr__(self, "_keys", tuple(normalise_word(w) for w in self.words))

    @property
    def length(self) -> int:
        return len(self.token_ids)

    def word_positions(self, word_index: int) -> list[int]:
        """Context positions of the tokens of word `word_index`."""
        return [p for p, w in enumerate(self.token_words) if w == word_index]

    def find_phrase(self, phrase: str) -> list[int]:
        """Context positions of every occurrence of `phrase` (one or more words).

        Raises ValueError naming the phrase and listing the prompt's words when absent.
        """
        keys = [normalise_word(w) for w in phrase.split()]
        keys = [k for k in keys if k]
        if not keys:
            raise ValueError(f"empty word {phrase!r}")
        positions: list[int] = []
        for start in range(len(self._keys) - len(keys) + 1):
            if list(self._keys[start : start + len(keys)]) == keys:
                for index in range(start, start + len(keys)):
                    positions.extend(self.word_positions(index))
        if not positions:
            words = " ".join(self.words)
            raise ValueError(f"the word {phrase!r} is not in the prompt {self.text!r} (its words: {words})")
        return positions


@dataclass(frozen=True)
class PromptSet:
    """A source prompt and its targets, in batch-row order (row 0 source, then targets)."""

    source: PromptTokens
    targets: tuple[PromptTokens, ...]

    @property
    def rows(self) -> int:
        return 1 + len(self.targets)

    @property
    def all(self) -> tuple[PromptTokens, ...]:
        return (self.source, *self.targets)


def find_word(prompts: tuple[PromptTokens, ...] | list[PromptTokens], word: str, what: str) -> list[list[int] | None]:
    """Context positions of `word` (one or more words) in each of `prompts`, None where it is absent: the one
    word finder of plans, local blend, mask extraction and the editor's checks.

    Raises ValueError, starting with `what` (the input naming the word), when `word` is empty or in none of
    `prompts`; the message names the word and lists each prompt's words."""
    if not any(normalise_word(w) for w in word.split()):
        raise ValueError(f"{what}: empty word {word!r}")
    found: list[list[int] | None] = []
    for prompt in prompts:
        try:
            found.append(prompt.find_phrase(word))
        except ValueError:
            found.append(None)
    if all(positions is None for positions in found):
        listing = "; nor in ".join(f"{p.text!r} (its words: {' '.join(p.words)})" for p in prompts)
        raise ValueError(f"{what}: the word {word!r} is not in the prompt {listing}")
    return found
