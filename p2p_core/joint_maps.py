"""Where the words land in a joint call: the image->text maps of a few chosen words, nothing more.

Local blend and attention masks need, per row, the attention of every image token on the text
tokens of a few words, with the softmax over the whole row (all N keys, image keys included), as
the UNet path's cross-attention maps (maps.py) that blending.py thresholds. Exactly, per head:

    P[i, j] = exp(s_ij - lse_i),   s_ij = q_i . k_j / sqrt(D),   lse_i = log sum_n exp(s_in)

The logits of the image queries against all keys are formed `CHUNK_ELEMENTS` at a time (a block of
image queries at once), each block's log-sum-exp taken and only its text columns kept, so neither
the [N, N] map nor the [image, N] part of it is ever held whole. A word's map is the sum over its
text tokens (a word split into several tokens, a phrase, or SD3's CLIP and T5 copies of a word),
weighted by `columns` [W, text].
Shapes: q, k [B, H, N, D] as in joint.py; the result [B, W, image] in float32, the mean over heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .joint import JointLayout
from .maps import CHUNK_ELEMENTS


def word_columns(words: Sequence[Sequence[int]], text: int) -> torch.Tensor:
    """[W, text] float32: 1 at the text positions of word w (positions within the call's text tokens).

    ValueError naming the word (by its index) whose positions are empty or outside 0..text-1."""
    columns = torch.zeros((len(words), text))
    for w, positions in enumerate(words):
        if not positions or not all(0 <= p < text for p in positions):
            raise ValueError(f"word {w}: text positions {list(positions)} are not within the call's {text} text tokens")
        columns[w, list(positions)] = 1.0
    return columns


def image_text_maps(
    q: torch.Tensor,
    k: torch.Tensor,
    tokens: JointLayout,
    columns: torch.Tensor,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> torch.Tensor:
    """maps[b, w, i] = mean_h sum_j columns[b, w, j] P[b, h, img_i, txt_j]: [B, W, image] float32.

    q, k [B, H, N, D] (the rows whose maps are wanted); columns [W, text] (every row) or
    [B, W, text] (each row its own words: the source's words on the source row, ...).
    """
    batch, heads, n, dim = q.shape
    if n != tokens.tokens or columns.shape[-1] != tokens.text:
        raise ValueError(
            f"maps: q has {n} tokens and columns {columns.shape[-1]} text tokens; the layout has "
            f"{tokens.text} text + {tokens.image} image tokens"
        )
    image, text = tokens.image_slice, tokens.text_slice
    keys = k.float().transpose(-1, -2) * dim**-0.5  # [B, H, D, N]
    weights = columns.float().to(q.device).transpose(-1, -2)  # [(B,) text, W]
    out = torch.empty((batch, tokens.image, columns.shape[-2]), device=q.device, dtype=torch.float32)
    queries = q[:, :, image]
    step = max(1, chunk_elements // (batch * heads * n))
    for first in range(0, tokens.image, step):
        logits = queries[:, :, first : first + step].float() @ keys  # [B, H, n, N]
        lse = logits.logsumexp(-1, keepdim=True)
        text_probs = (logits[..., text] - lse).exp().mean(1)  # [B, n, text]
        out[:, first : first + step] = text_probs @ weights
    return out.transpose(1, 2)
