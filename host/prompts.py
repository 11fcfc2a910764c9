"""Prompts through the model's own tokenizer and text encoder (PromptPair's work, and the tokens of the
`/p2p/align` route)."""

from __future__ import annotations

import math

import torch

from ..p2p_core.tokens import PromptSet, PromptTokens
from .errors import UserError

END_OF_WORD = "</w>"


def split_targets(target: str) -> list[str]:
    """One target per non-empty line."""
    return [line.strip() for line in target.splitlines() if line.strip()]


def _sd_tokenizer(tokenizers, key: str):
    """The SDTokenizer behind output key `key` ("l", "g", "h") of a ComfyUI CLIP's tokenizer."""
    tokenizer = getattr(tokenizers, f"clip_{key}", None)
    if tokenizer is None or not hasattr(tokenizer, "inv_vocab"):
        raise UserError(f"Prompt-to-Prompt: unsupported text encoder (no CLIP tokenizer for {key!r})")
    return tokenizer


def prompt_tokens(clip, text: str) -> tuple[PromptTokens, dict]:
    """The prompt's positions and words, and ComfyUI's token dict for encoding it.

    ComfyUI parses weights like `(red:1.2)`, embeddings and chunks of 77 tokens; the words are
    rebuilt from CLIP's end-of-word marks so that a word split in several tokens stays one word.
    """
    tokens = clip.tokenize(text, return_word_ids=True)
    for chunks in tokens.values():
        for chunk in chunks:
            for _token, weight, _word_id in chunk:
                if not math.isfinite(weight):
                    raise ValueError(
                        f"PromptPair: the prompt {text!r} weights a word by {weight}: write a finite number, "
                        "like (red:1.2)"
                    )
    return read_tokens(clip.tokenizer, text, tokens)


def read_tokens(tokenizers, text: str, tokens: dict) -> tuple[PromptTokens, dict]:
    """prompt_tokens from a tokenizer alone: `tokenizers` is a CLIP's `tokenizer` (or a model-free
    `comfy.sd1_clip.SD1Tokenizer()`), `tokens` what its `tokenize_with_weights(text, True)` gave."""
    key = "l" if "l" in tokens else next(iter(tokens))
    tokenizer = _sd_tokenizer(tokenizers, key)
    words: list[str] = []
    ids: list[int] = []
    word_of: list[int] = []
    pending = ""
    for chunk in tokens[key]:
        for token, _weight, word_id in chunk:
            if not isinstance(token, int):
                ids.append(-1)
                if not pending:
                    words.append("<embedding>")
                word_of.append(len(words) - 1)
                continue
            ids.append(token)
            if word_id == 0:
                word_of.append(-1)
                continue
            piece = tokenizer.inv_vocab.get(token, "")
            if not pending:
                words.append("")
            word_of.append(len(words) - 1)
            pending += piece
            words[-1] = pending.removesuffix(END_OF_WORD)
            if piece.endswith(END_OF_WORD):
                pending = ""
    chunk_len = len(tokens[key][0])
    plain = {k: [[(t, w) for t, w, _ in chunk] for chunk in v] for k, v in tokens.items()}
    return PromptTokens(text, tuple(words), tuple(ids), tuple(word_of), chunk_len), plain


def encode_prompts(clip, source: str, targets: list[str]) -> tuple[list, PromptSet]:
    """CONDITIONING with one row per prompt (source first) and the PromptSet describing them.

    Prompts of different chunk counts are repeated to a common length, as ComfyUI does when it
    batches conds: repeated keys leave attention unchanged.
    """
    prompts = []
    encoded = []
    for text in [source, *targets]:
        tokens, plain = prompt_tokens(clip, text)
        prompts.append(tokens)
        encoded.append(clip.encode_from_tokens(plain, return_pooled=True, return_dict=True))
    length = math.lcm(*(e["cond"].shape[1] for e in encoded))
    cond = torch.cat([e["cond"].repeat(1, length // e["cond"].shape[1], 1) for e in encoded])
    extra = {}
    for name, value in encoded[0].items():
        if name == "cond":
            continue
        if torch.is_tensor(value) and value.shape[0] == 1 and all(torch.is_tensor(e.get(name)) for e in encoded):
            extra[name] = torch.cat([e[name] for e in encoded])
        else:
            extra[name] = value
    return [[cond, extra]], PromptSet(prompts[0], tuple(prompts[1:]))
