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
The maps are those of the image grid's tokens, the first `grid` of the call's image tokens: what a model
appends to them (Z-Image's padding to a multiple of 32 tokens; the reference images' tokens of Flux Kontext
and Qwen-Image-Edit) and to the context (Z-Image's padding) keeps its place among the keys of the softmax,
as the model attends to it, and has no map; the context's padding takes no word.
Shapes: q, k [B, H, N, D] as in joint.py; the result [B, W, grid] in float32, the mean over heads.
`reference_image_text_maps` is the same on the explicit map softmax(Q K^T / sqrt(D)) (the tests' reference).

`JointMapCall` is one joint call as the map recorders (maps.py `CrossObservation`) see it: the maps of
every word position of each row's prompt (its positions with a word; start, end and padding tokens left
at 0), on the image token grid, smoothed by a small Gaussian (Shin et al. 2025 smooth the noisy maps of
MM-DiT blocks), for the blocks the host's family chose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .attention import Attend
from .blending import gaussian_smooth
from .joint import JointLayout
from .tokens import PromptSet

SMOOTHING_SIGMA = 0.5
"""Sigma, in image tokens, of the 3x3 Gaussian each call's maps are smoothed with (blending.gaussian_smooth):
a light smoothing of the token grid's noise, before the averaging over blocks and steps."""


def word_columns(words: Sequence[Sequence[int]], text: int) -> torch.Tensor:
    """[W, text] float32: 1 at the text positions of word w (positions within the call's text tokens).

    ValueError naming the word (by its index) whose positions are empty or outside 0..text-1."""
    columns = torch.zeros((len(words), text))
    for w, positions in enumerate(words):
        if not positions or not all(0 <= p < text for p in positions):
            raise ValueError(f"word {w}: text positions {list(positions)} are not within the call's {text} text tokens")
        columns[w, list(positions)] = 1.0
    return columns


def grid_queries(tokens: JointLayout, grid: int | None) -> slice:
    """The token slice of the call's first `grid` image tokens (those of the image grid; None: every image
    token). ValueError when the call has fewer image tokens than that."""
    image = tokens.image_slice
    if grid is None:
        return image
    if not 0 < grid <= tokens.image:
        raise ValueError(f"maps: a grid of {grid} image tokens does not fit the call's {tokens.image} image tokens")
    return slice(image.start, image.start + grid)


def image_text_maps(
    q: torch.Tensor,
    k: torch.Tensor,
    attend: Attend,
    tokens: JointLayout,
    columns: torch.Tensor,
    grid: int | None = None,
) -> torch.Tensor:
    """maps[b, w, i] = mean_h sum_j columns[b, w, j] P[b, h, img_i, txt_j]: [B, W, grid] float32.

    q, k [B, H, N, D] (the rows whose maps are wanted); attend: the host's kernel, as in joint.py;
    columns [W, text] (every row) or [B, W, text] (each row its own words: the source's words on
    the source row, ...); grid: the maps of the first `grid` image tokens (grid_queries; None: all).
    """
    batch, heads, n, dim = q.shape
    if n != tokens.tokens or columns.shape[-1] != tokens.text:
        raise ValueError(
            f"maps: q has {n} tokens and columns {columns.shape[-1]} text tokens; the layout has "
            f"{tokens.text} text + {tokens.image} image tokens"
        )
    words = columns.shape[-2]
    per_row = columns.to(k).expand(batch, words, tokens.text).transpose(1, 2)  # [B, text, W]
    queries = q[:, :, grid_queries(tokens, grid)]
    out = torch.empty((batch, words, queries.shape[2]), device=q.device, dtype=torch.float32)
    for first in range(0, words, dim):
        group = per_row[:, :, first : first + dim]
        values = k.new_zeros((batch, heads, n, dim))
        values[:, :, tokens.text_slice, : group.shape[-1]] = group[:, None]
        probs = attend(queries, k, values).unflatten(-1, (heads, dim))  # [B, image, H, D]
        out[:, first : first + group.shape[-1]] = probs[..., : group.shape[-1]].float().mean(2).transpose(1, 2)
    return out


def reference_image_text_maps(
    q: torch.Tensor, k: torch.Tensor, tokens: JointLayout, columns: torch.Tensor, grid: int | None = None
) -> torch.Tensor:
    """image_text_maps on the explicit map: P = softmax(Q[img] K^T / sqrt(D)) over all N keys in float32,
    [B, H, grid, N], then maps[b, w, i] = mean_h sum_j columns[b, w, j] P[b, h, i, txt_j]: [B, W, grid]."""
    batch, heads, _, dim = q.shape
    queries = q[:, :, grid_queries(tokens, grid)].float() * dim**-0.5
    probs = torch.softmax(queries @ k.float().transpose(-1, -2), dim=-1)[..., tokens.text_slice]
    per_row = columns.to(probs).expand(batch, columns.shape[-2], tokens.text)
    return torch.einsum("bhit,bwt->bwi", probs, per_row) / heads


@dataclass(frozen=True)
class JointMapCall:
    """One joint-attention call as a maps.py CrossObservation: the image->text maps of each row's word
    positions, from q, k [B, H, N, D] (before the edit) with `tokens`' layout, the first h * w image tokens
    on `grid` (h, w; the rest the model's padding or reference images' tokens). attend: the host's kernel
    (image_text_maps); None: the explicit reference (reference_image_text_maps). A prompt position p is
    every text token j < `context` with j % length = p (a context repeated to a common length; the text
    tokens from `context` on are the model's padding; None: every text token is the context's)."""

    q: torch.Tensor
    k: torch.Tensor
    attend: Attend | None
    tokens: JointLayout
    prompts: PromptSet
    grid: tuple[int, int]
    step: tuple[int, int]
    chunk_starts: list[int]
    factor: None = None
    """A diffusion transformer has one grid: every map resolution takes it."""
    context: int | None = None
    """The call's text tokens that are the context's (the first ones); None: all of them."""

    def columns(self) -> tuple[list[list[int]], torch.Tensor]:
        """(per row, its prompt's word positions; columns [R, W, text]: 1 where text token j repeats row r's
        w-th word position, W the most word positions of a row). ValueError when the call's context is not
        a whole number of a prompt's repeats."""
        positions = [[p for p, word in enumerate(prompt.token_words) if word >= 0] for prompt in self.prompts.all]
        text = self.tokens.text
        context = text if self.context is None else self.context
        columns = torch.zeros((self.prompts.rows, max(map(len, positions)), text), device=self.q.device)
        for row, (prompt, found) in enumerate(zip(self.prompts.all, positions, strict=True)):
            if context % prompt.length:
                raise ValueError(
                    f"the joint call has {context} context tokens, not a multiple of the prompt's {prompt.length}"
                )
            if found:
                keys = torch.arange(text, device=self.q.device) % prompt.length
                keys[context:] = -1  # the model's padding: no prompt position
                columns[row, : len(found)] = (keys[None] == torch.tensor(found, device=keys.device)[:, None]).float()
        return positions, columns

    def maps(self) -> torch.Tensor:
        """[R, L, h*w] float32 (see CrossObservation.maps); 0 at the positions of no word."""
        rows, (h, w) = self.prompts.rows, self.grid
        out = torch.zeros((rows, max(p.length for p in self.prompts.all), h * w), device=self.q.device)
        positions, columns = self.columns()
        words = columns.shape[1]
        if words == 0:
            return out
        index = torch.tensor([start + r for start in self.chunk_starts for r in range(rows)], device=self.q.device)
        q, k, chunked = self.q[index], self.k[index], columns.repeat(len(self.chunk_starts), 1, 1)
        if self.attend is None:
            maps = reference_image_text_maps(q, k, self.tokens, chunked, h * w)
        else:
            maps = image_text_maps(q, k, self.attend, self.tokens, chunked, h * w)
        maps = maps.reshape(len(self.chunk_starts), rows * words, h, w).sum(0)  # [R * W, h, w]
        maps = gaussian_smooth(maps, SMOOTHING_SIGMA).reshape(rows, words, h * w)
        for row, found in enumerate(positions):
            out[row, found] = maps[row, : len(found)]
        return out
