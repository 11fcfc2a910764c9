"""Token alignment between a source prompt and a target prompt.

Both mappers return `(mapper, injected)`:
  mapper   [Ls, Lt] float: column j says which source positions give target position j
           its injected attention (a column sums to 1 where injected);
  injected [Lt] float: 1 where target position j takes the source's attention, 0 for new tokens.
Positions are the prompts' own context positions (chunks * 77).
"""

from __future__ import annotations

from difflib import SequenceMatcher

import torch

from .tokens import PromptTokens


def _special_positions(prompt: PromptTokens) -> list[tuple[int, int, int]]:
    """(chunk, offset among the chunk's trailing specials or -1 for its start token, position)."""
    out = []
    for chunk in range(prompt.length // prompt.chunk_len):
        start = chunk * prompt.chunk_len
        span = range(start, start + prompt.chunk_len)
        if prompt.token_words[start] == -1:
            out.append((chunk, -1, start))
        last_word = max((p for p in span if prompt.token_words[p] != -1), default=start)
        for offset, p in enumerate(p for p in span if p > last_word and prompt.token_words[p] == -1):
            out.append((chunk, offset, p))
    return out


def _map_specials(source: PromptTokens, target: PromptTokens, mapper: torch.Tensor) -> None:
    """Start token to start token; end/padding tokens by their offset after the last word."""
    by_chunk: dict[int, dict[int, int]] = {}
    for chunk, offset, p in _special_positions(source):
        by_chunk.setdefault(chunk, {})[offset] = p
    last_chunk = max(by_chunk)
    for chunk, offset, p in _special_positions(target):
        slots = by_chunk[min(chunk, last_chunk)]
        trailing = max(slots)
        mapper[slots.get(offset, slots[trailing]) if offset >= 0 else slots.get(-1, p), p] = 1.0


def _spread(mapper: torch.Tensor, src: list[int], tgt: list[int]) -> None:
    """One to one when the counts agree, else every target token shares the span's attention."""
    if len(src) == len(tgt):
        mapper[src, tgt] = 1.0
    else:
        for j in tgt:
            mapper[src, j] = 1.0 / len(tgt)


def replacement_mapper(source: PromptTokens, target: PromptTokens) -> tuple[torch.Tensor, torch.Tensor]:
    """Word swap: words kept map one to one, each swapped span maps onto its replacement.

    A swapped span may change its number of words and tokens ("bicycle" -> "sports car");
    the words after it stay aligned. Words only added or only removed are not a swap.
    """
    mapper = torch.zeros(source.length, target.length)
    src_keys = [w.lower() for w in source.words]
    tgt_keys = [w.lower() for w in target.words]
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, src_keys, tgt_keys, autojunk=False).get_opcodes():
        if tag in ("insert", "delete"):
            added = " ".join(target.words[j1:j2]) or " ".join(source.words[i1:i2])
            verb = "adds" if tag == "insert" else "drops"
            raise ValueError(
                f"AttentionReplace swaps words, but the target {target.text!r} {verb} {added!r} "
                f"with no counterpart in the source {source.text!r}: use AttentionRefine to add or "
                "remove words"
            )
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                _spread(mapper, source.word_positions(i), target.word_positions(j))
        else:
            src = [p for i in range(i1, i2) for p in source.word_positions(i)]
            tgt = [p for j in range(j1, j2) for p in target.word_positions(j)]
            _spread(mapper, src, tgt)
    _map_specials(source, target, mapper)
    return mapper, torch.ones(target.length)


def global_alignment(a: list[int], b: list[int], gap: int = -1, match: int = 1, mismatch: int = -1) -> list[int]:
    """Needleman-Wunsch alignment: for each element of `b`, the aligned equal element of `a` or -1."""
    n, m = len(a), len(b)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        score[i][0] = i * gap
    for j in range(1, m + 1):
        score[0][j] = j * gap
    for i in range(1, n + 1):
        row, prev = score[i], score[i - 1]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (match if a[i - 1] == b[j - 1] else mismatch)
            row[j] = max(diag, prev[j] + gap, row[j - 1] + gap)
    aligned = [-1] * m
    i, j = n, m
    while i > 0 and j > 0:
        diag = score[i - 1][j - 1] + (match if a[i - 1] == b[j - 1] else mismatch)
        if score[i][j] == diag:
            if a[i - 1] == b[j - 1]:
                aligned[j - 1] = i - 1
            i, j = i - 1, j - 1
        elif score[i][j] == score[i - 1][j] + gap:
            i -= 1
        else:
            j -= 1
    return aligned


def refinement_mapper(source: PromptTokens, target: PromptTokens) -> tuple[torch.Tensor, torch.Tensor]:
    """Added or removed phrases: global alignment of the token sequences; new tokens get no injection."""
    # Embedding vectors (-1) never match anything: give each a unique negative id.
    src_ids = [t if t >= 0 else -2 - p for p, t in enumerate(source.token_ids)]
    tgt_ids = [t if t >= 0 else -10_000 - p for p, t in enumerate(target.token_ids)]
    aligned = global_alignment(src_ids, tgt_ids)
    mapper = torch.zeros(source.length, target.length)
    injected = torch.zeros(target.length)
    for j, i in enumerate(aligned):
        if i >= 0:
            mapper[i, j] = 1.0
            injected[j] = 1.0
    kept_words = {target.token_words[j] for j, i in enumerate(aligned) if i >= 0} - {-1}
    if target.words and not kept_words:
        raise ValueError(
            f"AttentionRefine found no word of the target {target.text!r} in the source "
            f"{source.text!r}: the prompts cannot be aligned; edit a copy of the source prompt"
        )
    return mapper, injected
