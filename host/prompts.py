"""Prompts through the model's own tokenizer and text encoder (PromptPair's work, and the tokens of the
`/p2p/align` route)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..p2p_core.tokens import PromptSet, PromptTokens
from .errors import UserError

END_OF_WORD = "</w>"
"""CLIP's mark of a word's last token."""
WORD_START = "\u2581"
"""SentencePiece's mark of a word's first token (T5: Flux's text encoder)."""
T5_KEY = "t5xxl"
"""The key of the T5 tokens in a ComfyUI token dict (Flux: the model's context; SD3: beside CLIP-L/G)."""
CHAT_ENCODERS = {"qwen25_7b": True, "qwen3_4b": False}
"""The token dict keys of the LLM text encoders that read the prompt inside ComfyUI's chat template (the
tokenizer's `llama_template`), and whether the encoder drops the template's tokens before the prompt from
the context: Qwen2.5-VL 7B (Qwen-Image) does (its context starts at the prompt's first token and keeps the
template's end), Qwen3 4B (Z-Image) keeps the whole template."""


def split_targets(target: str) -> list[str]:
    """One target per non-empty line."""
    return [line.strip() for line in target.splitlines() if line.strip()]


def _sd_tokenizer(tokenizers, key: str):
    """The SDTokenizer behind output key `key` ("l", "g", "h", "t5xxl", an LLM's) of a ComfyUI CLIP's tokenizer
    (T5 is `t5xxl` beside CLIP, `clip_t5xxl` alone: Chroma's)."""
    names = (key, f"clip_{key}") if key == T5_KEY or key in CHAT_ENCODERS else (f"clip_{key}",)
    tokenizer = next((getattr(tokenizers, name) for name in names if hasattr(tokenizers, name)), None)
    if tokenizer is None or not hasattr(tokenizer, "inv_vocab"):
        raise UserError(f"unsupported text encoder (no tokenizer for {key!r})")
    return tokenizer


def is_sd3(tokens: dict) -> bool:
    """Whether a token dict is SD3's (CLIP-L, CLIP-G and T5 tokens of one prompt)."""
    return T5_KEY in tokens and "g" in tokens


def context_parts(tokens: dict, encoder: Any = None) -> tuple[str, ...]:
    """The keys of the token dict whose tokens the diffusion model attends to, in the context's order: T5's
    for Flux (CLIP-L only gives its pooled vector), CLIP-L's (or the only one) for the UNet models, and for
    SD3/SD3.5 (CLIP-L, CLIP-G and T5 tokens) the CLIP part (CLIP-L/G side by side in the features: CLIP-L's
    tokens, else CLIP-G's) followed by the T5 part, each where `encoder` (a CLIP's `cond_stage_model`; None:
    every encoder) has that text encoder."""
    if is_sd3(tokens):

        def loaded(name: str) -> bool:
            return encoder is None or getattr(encoder, name, None) is not None

        clip = [key for key in ("l", "g") if loaded(f"clip_{key}")][:1]
        parts = (*clip, *([T5_KEY] if loaded(T5_KEY) else []))
        if not parts:
            raise UserError("this SD3 text encoder has none of CLIP-L, CLIP-G and T5 loaded")
        return parts
    if T5_KEY in tokens:
        return (T5_KEY,)
    chat = [key for key in tokens if key in CHAT_ENCODERS]
    if chat:
        return (chat[0],)
    return ("l",) if "l" in tokens else (next(iter(tokens)),)


def prompt_tokens(clip, text: str) -> tuple[PromptTokens, dict]:
    """The prompt's positions and words, and ComfyUI's token dict for encoding it.

    ComfyUI parses weights like `(red:1.2)`, embeddings and chunks of 77 tokens; the words are
    rebuilt from CLIP's end-of-word marks (T5's word-start marks) so that a word split in several
    tokens stays one word.
    """
    return read_tokens(clip.tokenizer, text, tokenize(clip, text), clip.cond_stage_model)


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


class _Walk:
    """The positions, token ids and words of a prompt as its token chunks are read, part after part."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.ids: list[int] = []
        self.word_of: list[int] = []
        self.starts: list[tuple[int, int]] = []
        """Per word: (ComfyUI word id, where its characters start in that whitespace-separated word)."""

    def read(self, tokenizer, chunks: list, sentencepiece: bool) -> None:
        """The words of the first part: rebuilt from CLIP's end-of-word marks (T5's word-start marks), so that
        a word split in several tokens stays one word."""
        in_word = False  # whether the next token continues the last word
        offset, last_id = 0, 0  # characters of ComfyUI word `last_id` read so far
        for chunk in chunks:
            for token, _weight, word_id in chunk:
                if not isinstance(token, int):
                    self.ids.append(-1)
                    if not in_word:
                        self.words.append("<embedding>")
                        self.starts.append((word_id, 0))
                    self.word_of.append(len(self.words) - 1)
                    continue
                self.ids.append(token)
                if word_id == 0:
                    self.word_of.append(-1)
                    in_word = False
                    continue
                if word_id != last_id:
                    offset, last_id = 0, word_id
                raw = tokenizer.inv_vocab.get(token, "")
                piece = raw
                if sentencepiece and piece.startswith(WORD_START):
                    in_word = False
                    piece = piece.removeprefix(WORD_START)
                piece = piece.removesuffix(END_OF_WORD)
                if not in_word:
                    self.words.append("")
                    self.starts.append((word_id, offset))
                self.word_of.append(len(self.words) - 1)
                self.words[-1] += piece
                offset += len(piece)
                in_word = sentencepiece or not raw.endswith(END_OF_WORD)

    def read_chat(self, tokenizers, key: str, chunks: list) -> None:
        """The context of an LLM text encoder (CHAT_ENCODERS): the prompt's tokens inside ComfyUI's chat
        template, its words rebuilt from the byte-level BPE's word-start marks (a token whose text starts with
        white space starts a word; one of white space alone belongs to none); the template's tokens and the
        padding belong to no word, and those the encoder drops are not in the context."""
        tokenizer = _sd_tokenizer(tokenizers, key)
        before, after = tokenizers.llama_template.split("{}")
        prefix = tokenizer.tokenizer(before)["input_ids"]
        end_mark = tokenizer.tokenizer(after)["input_ids"][0]
        ids = [token if isinstance(token, int) else -1 for chunk in chunks for token, _weight, _word in chunk]
        if ids[: len(prefix)] != prefix or end_mark not in ids[len(prefix) :]:
            raise UserError(
                "the prompt does not read as one text inside the text encoder's chat template (a prompt that starts "
                "with a line break or holds the template's own marks, such as <|im_end|>): write it as plain text"
            )
        end = ids.index(end_mark, len(prefix))
        word_ids: list[list[int]] = []
        in_word = False
        for position, token in enumerate(ids):
            if CHAT_ENCODERS[key] and position < len(prefix):
                continue  # dropped by the encoder
            self.ids.append(token)
            piece = tokenizer.tokenizer.decode([token]) if token >= 0 else ""
            if not len(prefix) <= position < end or not piece.strip():
                self.word_of.append(-1)
                in_word = False
                continue
            if not in_word or piece[0].isspace():
                word_ids.append([])
            word_ids[-1].append(token)
            self.word_of.append(len(word_ids) - 1)
            in_word = True
        self.words = [tokenizer.tokenizer.decode(word).strip() for word in word_ids]

    def place(self, tokenizer, chunks: list) -> None:
        """The positions of a later part (SD3's T5 after its CLIP part): each takes the word of the first part
        that holds its first character in the same ComfyUI word (the tokenizers split a word differently:
        CLIP's `cat,` is `cat` and `,`); -1 for start, end and padding tokens, as for a word the first part
        does not have."""
        offset, last_id = 0, 0
        for chunk in chunks:
            for token, _weight, word_id in chunk:
                self.ids.append(token if isinstance(token, int) else -1)
                candidates = [i for i, (word, _) in enumerate(self.starts) if word_id and word == word_id]
                if not candidates:
                    self.word_of.append(-1)
                    continue
                if word_id != last_id:
                    offset, last_id = 0, word_id
                holding = [i for i in candidates if self.starts[i][1] <= offset]
                self.word_of.append(holding[-1] if holding else candidates[0])
                if isinstance(token, int):
                    offset += len(tokenizer.inv_vocab.get(token, "").removeprefix(WORD_START))


def read_tokens(tokenizers, text: str, tokens: dict, encoder: Any = None) -> tuple[PromptTokens, dict]:
    """prompt_tokens from a tokenizer alone: `tokenizers` is a CLIP's `tokenizer` (or a model-free
    `comfy.sd1_clip.SD1Tokenizer()`), `tokens` what its `tokenize_with_weights(text, True)` gave, `encoder`
    the CLIP's `cond_stage_model` (None: every text encoder of the tokenizer is loaded).

    The positions are the context's (context_parts): for SD3, its CLIP part then its T5 part, the words
    those of the CLIP part, and each T5 position the word of its CLIP counterpart (one word, positions in
    both parts). One chunk of the whole length for T5 and SD3 (their context is not repeated per chunk)."""
    parts = context_parts(tokens, encoder)
    walk = _Walk()
    plain = {k: [[(t, w) for t, w, _ in chunk] for chunk in v] for k, v in tokens.items()}
    if parts[0] in CHAT_ENCODERS:
        walk.read_chat(tokenizers, parts[0], tokens[parts[0]])
        return PromptTokens(text, tuple(walk.words), tuple(walk.ids), tuple(walk.word_of), len(walk.ids)), plain
    walk.read(_sd_tokenizer(tokenizers, parts[0]), tokens[parts[0]], sentencepiece=parts[0] == T5_KEY)
    for key in parts[1:]:
        walk.place(_sd_tokenizer(tokenizers, key), tokens[key])
    chunk_len = len(walk.ids) if T5_KEY in parts else len(tokens[parts[0]][0])
    return PromptTokens(text, tuple(walk.words), tuple(walk.ids), tuple(walk.word_of), chunk_len), plain


def _padded(tokenizers, raw: list[dict], key: str) -> list[dict]:
    """The token dicts with their `key` tokens (T5's or an LLM's: one chunk each) padded to the longest with
    that tokenizer's pad token."""
    pad = _sd_tokenizer(tokenizers, key).pad_token
    longest = max(len(tokens[key][0]) for tokens in raw)
    return [{**tokens, key: [tokens[key][0] + [(pad, 1.0, 0)] * (longest - len(tokens[key][0]))]} for tokens in raw]


def _check_clip_chunks(texts: list[str], raw: list[dict], clip_parts: tuple[str, ...]) -> None:
    """A UserError naming the prompts whose CLIP parts (SD3's, before its T5 part) differ in chunk count."""
    for key in clip_parts:
        counts = [len(tokens[key]) for tokens in raw]
        if len(set(counts)) > 1:
            listing = ", ".join(f"{text!r}: {count}" for text, count in zip(texts, counts, strict=True))
            raise UserError(
                "source and target: on SD3 every prompt must fill as many 77-token CLIP chunks (about 75 words "
                f"each; {listing}): shorten the longer prompt or lengthen the others"
            )


def encode_prompts(clip, source: str, targets: list[str]) -> tuple[list, PromptSet]:
    """CONDITIONING with one row per prompt (source first) and the PromptSet describing them.

    Prompts of different chunk counts are repeated to a common length, as ComfyUI does when it
    batches conds: repeated keys leave attention unchanged. Not so in joint attention (the text keys
    share the softmax with the image keys): T5 prompts are padded to a common length instead, and SD3's
    CLIP parts (75 words a chunk, not padded) must have as many chunks in every prompt. LLM encoders'
    prompts (Qwen-Image, Z-Image) are padded as T5's, without their masks: Z-Image's model pads the context
    to a multiple of 32 tokens and not the mask (a mask with a 0 fails in 0.3.75; 0.8 has the same code), Qwen-Image's
    reads none; the LLM is causal, so the padding leaves the prompt's own tokens as they are.
    """
    texts = [source, *targets]
    raw = [tokenize(clip, text, "target" if i else "source") for i, text in enumerate(texts)]
    parts = context_parts(raw[0], clip.cond_stage_model)
    if T5_KEY in parts or parts[0] in CHAT_ENCODERS:
        raw = _padded(clip.tokenizer, raw, T5_KEY if T5_KEY in parts else parts[0])
    if is_sd3(raw[0]):
        _check_clip_chunks(texts, raw, tuple(part for part in parts if part != T5_KEY))
    prompts = []
    encoded = []
    for text, tokens in zip(texts, raw, strict=True):
        prompt, plain = read_tokens(clip.tokenizer, text, tokens, clip.cond_stage_model)
        prompts.append(prompt)
        encoded.append(clip.encode_from_tokens(plain, return_pooled=True, return_dict=True))
        if encoded[-1]["cond"].shape[1] != prompt.length:
            raise RuntimeError(
                f"the text encoder gave {encoded[-1]['cond'].shape[1]} context tokens for {text!r}, not the "
                f"{prompt.length} its tokens were read as (host/prompts.py CHAT_ENCODERS: does this ComfyUI drop "
                "other template tokens?)"
            )
    length = math.lcm(*(e["cond"].shape[1] for e in encoded))
    cond = torch.cat([e["cond"].repeat(1, length // e["cond"].shape[1], 1) for e in encoded])
    extra = {}
    for name, value in encoded[0].items():
        if name == "cond" or (name == "attention_mask" and parts[0] in CHAT_ENCODERS):
            continue
        if torch.is_tensor(value) and value.shape[0] == 1 and all(torch.is_tensor(e.get(name)) for e in encoded):
            extra[name] = torch.cat([e[name] for e in encoded])
        else:
            extra[name] = value
    return [[cond, extra]], PromptSet(prompts[0], tuple(prompts[1:]))
