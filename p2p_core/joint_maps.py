"""Where the words land in a joint call: the image->text maps of a few chosen words, nothing more.

Local blend and attention masks need, per row, the attention of every image token on the text
tokens of a few words, with the softmax over the whole row (all N keys, image keys included), as
the UNet path's cross-attention maps (maps.py) that blending.py thresholds. A word's map is the sum
over its text tokens (a word split into several tokens, a phrase, or SD3's CLIP and T5 copies of a
word), weighted by `columns` [W, text]; per head, with P = softmax(Q K^T / sqrt(D)) over all N keys:

    map_w[i] = sum_j columns[w, j] P[img_i, txt_j] = (P U)[img_i, w],
    U [N, W]: U[txt_j, w] = columns[w, j], U[img, w] = 0

so one call of the host's kernel on the image queries, with the words' columns U as the values
(padded with zeros to the head dim D, D words per call), gives the maps exactly: the kernel's own
softmax over the whole row (and its key mask, if it carries one), no map formed, the cost of one
attention call.
Shapes: q, k [B, H, N, D] as in joint.py; the result [B, W, image] in float32, the mean over heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .attention import Attend
from .joint import JointLayout


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
    q: torch.Tensor, k: torch.Tensor, attend: Attend, tokens: JointLayout, columns: torch.Tensor
) -> torch.Tensor:
    """maps[b, w, i] = mean_h sum_j columns[b, w, j] P[b, h, img_i, txt_j]: [B, W, image] float32.

    q, k [B, H, N, D] (the rows whose maps are wanted); attend: the host's kernel, as in joint.py;
    columns [W, text] (every row) or [B, W, text] (each row its own words: the source's words on
    the source row, ...).
    """
    batch, heads, n, dim = q.shape
    if n != tokens.tokens or columns.shape[-1] != tokens.text:
        raise ValueError(
            f"maps: q has {n} tokens and columns {columns.shape[-1]} text tokens; the layout has "
            f"{tokens.text} text + {tokens.image} image tokens"
        )
    words = columns.shape[-2]
    per_row = columns.to(k).expand(batch, words, tokens.text).transpose(1, 2)  # [B, text, W]
    queries = q[:, :, tokens.image_slice]
    out = torch.empty((batch, words, tokens.image), device=q.device, dtype=torch.float32)
    for first in range(0, words, dim):
        group = per_row[:, :, first : first + dim]
        values = k.new_zeros((batch, heads, n, dim))
        values[:, :, tokens.text_slice, : group.shape[-1]] = group[:, None]
        probs = attend(queries, k, values).unflatten(-1, (heads, dim))  # [B, image, H, D]
        out[:, first : first + group.shape[-1]] = probs[..., : group.shape[-1]].float().mean(2).transpose(1, 2)
    return out
