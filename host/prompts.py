"""Prompts through the model's own tokenizer and text encoder (PromptPair's work, and the tokens of the
`/p2p/align` route)."""

from __future__ import annotations

import math

import torch

from ..p2p_core.tokens import PromptSet, PromptTokens
from .errors import UserError

END_OF_WORD = "</w>"
"""CLIP's mark of a word's last token."""
WORD_START = "\u2581"
"""SentencePiece's mark of a word's first token (T5: Flux's text encoder)."""
T5_KEY = "t5xxl"
"""The key of the T5 tokens in a ComfyUI token dict (Flux: the model's context; SD3: beside CLIP-L/G)."""


def split_targets(target: str) -> list[str]:
    """One target per non-empty line."""
    return [line.strip() for line in target.splitlines() if line.strip()]


def _sd_tokenizer(tokenizers, key: str):
    """The SDTokenizer behind output key `key` ("l", "g", "h", "t5xxl") of a ComfyUI CLIP's tokenizer."""
    tokenizer = getattr(tokenizers, key if key == T5_KEY else f"clip_{key}", None)
    if tokenizer is None or not hasattr(tokenizer, "inv_vocab"):
        raise UserError(f"unsupported text encoder (no tokenizer for {key!r})")
    return tokenizer


def context_key(tokens: dict) -> str:
    """The key of the token dict whose tokens the diffusion model attends to: T5's for a T5 encoder
    (Flux reads T5 tokens, CLIP-L only gives its pooled vector), else CLIP-L's (or the only one).

    A UserError for SD3's CLIP-L/G + T5 context, whose positions this adapter does not place yet."""
    if T5_KEY in tokens:
        if "g" in tokens:
            raise UserError(
                "SD3/SD3.5 text encoders (CLIP-L/G + T5) are not supported yet; "
                "supported: SD1.x/SD2.x/SDXL CLIP, Flux (T5)"
            )
        return T5_KEY
    return "l" if "l" in tokens else next(iter(tokens))


def prompt_tokens(clip, text: str) -> tuple[PromptTokens, dict]:
    """The prompt's positions and words, and ComfyUI's token dict for encoding it.

    ComfyUI parses weights like `(red:1.2)`, embeddings and chunks of 77 tokens; the words are
    rebuilt from CLIP's end-of-word marks (T5's word-start marks) so that a word split in several
    tokens stays one word.
    """
    return read_tokens(clip.tokenizer, text, tokenize(clip, text))


def tokenize(clip, text: str, what: str = "prompt") -> dict:
    """ComfyUI's token dict of `text` (with word ids); a UserError naming the input `what` for a weight
    that is not a finite number, such as `(red:nan)`, which would make every row of the batch NaN."""
    tokens = clip.tokenize(text, return_word_ids=True)
    for chunks in tokens.values():
        for chunk in chunks:
            for _token, weight, _word_id in chunk:
                if not math.isfinite(weight):
                    raise UserError(
                        f"{what}: {text!r} weights a word by {weight}: write a finite number, like (red:1.2)"
                    )
    return tokens


def read_tokens(tokenizers, text: str, tokens: dict) -> tuple[PromptTokens, dict]:
    """prompt_tokens from a tokenizer alone: `tokenizers` is a CLIP's `tokenizer` (or a model-free
    `comfy.sd1_clip.SD1Tokenizer()`), `tokens` what its `tokenize_with_weights(text, True)` gave."""
    key = context_key(tokens)
    tokenizer = _sd_tokenizer(tokenizers, key)
    sentencepiece = key == T5_KEY
    words: list[str] = []
    ids: list[int] = []
    word_of: list[int] = []
    in_word = False  # whether the next token continues the last word
    for chunk in tokens[key]:
        for token, _weight, word_id in chunk:
            if not isinstance(token, int):
                ids.append(-1)
                if not in_word:
                    words.append("<embedding>")
                word_of.append(len(words) - 1)
                continue
            ids.append(token)
            if word_id == 0:
                word_of.append(-1)
                in_word = False
                continue
            piece = tokenizer.inv_vocab.get(token, "")
            if sentencepiece and piece.startswith(WORD_START):
                in_word = False
                piece = piece.removeprefix(WORD_START)
            if not in_word:
                words.append("")
            word_of.append(len(words) - 1)
            words[-1] += piece.removesuffix(END_OF_WORD)
            in_word = sentencepiece or not piece.endswith(END_OF_WORD)
    chunk_len = len(tokens[key][0])
    plain = {k: [[(t, w) for t, w, _ in chunk] for chunk in v] for k, v in tokens.items()}
    return PromptTokens(text, tuple(words), tuple(ids), tuple(word_of), chunk_len), plain


def _padded_t5(tokenizers, raw: list[dict]) -> list[dict]:
    """The token dicts with their T5 tokens (one chunk each) padded to the longest with T5's pad token."""
    pad = _sd_tokenizer(tokenizers, T5_KEY).pad_token
    longest = max(len(tokens[T5_KEY][0]) for tokens in raw)
    return [
        {**tokens, T5_KEY: [tokens[T5_KEY][0] + [(pad, 1.0, 0)] * (longest - len(tokens[T5_KEY][0]))]} for tokens in raw
    ]


def encode_prompts(clip, source: str, targets: list[str]) -> tuple[list, PromptSet]:
    """CONDITIONING with one row per prompt (source first) and the PromptSet describing them.

    Prompts of different chunk counts are repeated to a common length, as ComfyUI does when it
    batches conds: repeated keys leave attention unchanged. Not so in joint attention (the text keys
    share the softmax with the image keys): T5 prompts are padded to a common length instead.
    """
    texts = [source, *targets]
    raw = [tokenize(clip, text, "target" if i else "source") for i, text in enumerate(texts)]
    if context_key(raw[0]) == T5_KEY:
        raw = _padded_t5(clip.tokenizer, raw)
    prompts = []
    encoded = []
    for text, tokens in zip(texts, raw, strict=True):
        prompt, plain = read_tokens(clip.tokenizer, text, tokens)
        prompts.append(prompt)
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
