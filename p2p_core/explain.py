"""A word-level account of a token alignment, for people: which target words keep, swap or add.

Reads the mappers of alignment.py (mapper [Ls, Lt], injected [Lt]) and never aligns anything
itself, so what a user is shown is what the edit does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tokens import PromptTokens, normalise_word


@dataclass(frozen=True)
class WordLink:
    """One target word.

    status: "kept" (takes the same source word's attention), "swapped" (takes other source
    words' attention), "added" (attends freely), or "partly kept" (some tokens aligned, some new).
    sources: indices into the source's words whose attention the word takes.
    """

    word: str
    status: str
    sources: tuple[int, ...]


def explain(
    source: PromptTokens, target: PromptTokens, mapper: torch.Tensor, injected: torch.Tensor
) -> tuple[list[WordLink], list[int]]:
    """(one WordLink per target word, indices of the source words no target token takes attention from).

    mapper [Ls, Lt], injected [Lt]: as returned by replacement_mapper / refinement_mapper.
    """
    links = []
    feeding = mapper > 0
    for index, word in enumerate(target.words):
        positions = target.word_positions(index)
        taken = [p for p in positions if injected[p] > 0 and feeding[:, p].any()]
        sources = sorted(
            {source.token_words[i] for p in taken for i in feeding[:, p].nonzero().flatten().tolist()} - {-1}
        )
        if not taken:
            status = "added"
        elif len(taken) < len(positions):
            status = "partly kept"
        elif len(sources) == 1 and normalise_word(source.words[sources[0]]) == normalise_word(word):
            status = "kept"
        else:
            status = "swapped"
        links.append(WordLink(word, status, tuple(sources)))
    used = feeding[:, injected > 0].any(dim=1)
    removed = [i for i in range(len(source.words)) if not any(used[p] for p in source.word_positions(i))]
    return links, removed
