"""Where the words land: cross-attention maps of one resolution, averaged on the fly.

A `MapRecorder` watches the cross-attention layers of one downsampling factor against the latent
(4 by default: 16x16 at 512 px for SD1.5, 32x32 at 1024 px for SDXL, the paper's choice) and
adds up, for the conditional rows only, softmax(Q K^T / sqrt(D)) averaged over heads. It keeps
one sum per prompt position, [R, L, h*w] (R prompts, L positions of the longest prompt), never a
map per layer or per step: `average()` is the mean over heads, layers and every model call of
the run so far (the paper's local blend reads the same running average of its attention store).
Word maps are sums over the word's positions (a word split into several tokens, or a phrase).
On a diffusion transformer (Flux, SD3) the same recorder sums the image->text maps of a few chosen
joint-attention blocks, on the image token grid, whatever its factor.

The recorder sees each call as a `CrossObservation`: the call's image positions (a grid h x w, at a
downsampling `factor` against the latent) and a `maps()` that gives their attention on every prompt
position, [R, L, h*w]. The UNet's cross-attention calls are `CrossCallMaps` (below: q [B, Nq, H*D],
k [B, Nk, H*D] as a host's cross-attention sees them, H heads); a joint-attention call of a diffusion
transformer is p2p_core/joint_maps.py `JointMapCall` (the image->text part of its attention, on the image
token grid, the model's only one: factor None). The batch is made of chunks of R rows (source, then
targets), `chunk_starts` naming the conditional chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from .tokens import PromptSet

RESOLUTIONS = {"1/32": 4, "1/64": 8, "1/16": 2, "1/8": 1}
"""Map resolution id (the layers' side against the image's, stored in workflows) -> downsampling factor of the
layers against the latent (1/8 of the image)."""
DEFAULT_RESOLUTION = "1/32"
"""The paper's."""
RESOLUTION_LABELS = {
    "1/32": "1/32 of the image (paper: 16x16 at 512 px)",
    "1/64": "1/64 of the image (8x8 at 512 px)",
    "1/16": "1/16 of the image (32x32 at 512 px)",
    "1/8": "1/8 of the image (64x64 at 512 px)",
}
"""Each resolution id's description (what workflows saved before the ids hold; they still load)."""

CHUNK_ELEMENTS = 1 << 22
"""Largest block of attention logits formed at once (16 MiB in float32)."""


def layer_grid(latent_grid: tuple[int, int] | None, queries: int) -> tuple[int, int, int] | None:
    """(factor, h, w) of a layer with `queries` positions on a latent grid (H, W): the UNet halves
    the side with padding, so level f has ceil(H / f) x ceil(W / f) positions. None if no level fits."""
    if not latent_grid:
        return None
    height, width = latent_grid
    for level in range(8):
        factor = 1 << level
        h, w = math.ceil(height / factor), math.ceil(width / factor)
        if h * w == queries:
            return factor, h, w
    return None


def head_mean_maps(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(D)) averaged over heads: [B, Nq, Nk] float32, formed CHUNK_ELEMENTS at a time."""
    batch, queries, inner = q.shape
    dim = inner // heads
    keys = k.shape[1]
    kh = k.float().reshape(batch, keys, heads, dim).permute(0, 2, 3, 1)
    out = torch.empty((batch, queries, keys), device=q.device, dtype=torch.float32)
    step = max(1, CHUNK_ELEMENTS // (batch * heads * keys))
    for start in range(0, queries, step):
        qh = q[:, start : start + step].float().reshape(batch, -1, heads, dim).transpose(1, 2)
        out[:, start : start + step] = torch.softmax(qh @ kh * dim**-0.5, dim=-1).mean(1)
    return out


def fold_positions(maps: torch.Tensor, length: int) -> torch.Tensor:
    """[..., Nk] -> [..., length]: key j of the call is prompt position j % length (ComfyUI repeats a
    shorter conditioning); the repeats share the position's attention, so they are summed."""
    keys = maps.shape[-1]
    if keys % length:
        raise ValueError(f"the conditioning has {keys} tokens, not a multiple of the prompt's {length}")
    return maps.reshape(*maps.shape[:-1], keys // length, length).sum(-2)


class CrossObservation(Protocol):
    """One attention call of the conditional rows, as the map observers (MapRecorder) see it."""

    grid: tuple[int, int]
    """(h, w): the call's image positions (its queries), row by row."""
    factor: int | None
    """The grid's downsampling against the latent (UNet levels 1, 2, 4, 8); None for a model with one grid
    (a diffusion transformer's image tokens), which every map resolution takes."""
    step: tuple[int, int]
    """(step, steps) of the sampler."""
    chunk_starts: list[int]
    """The first batch row of each conditional chunk of the call (its source row)."""

    def maps(self) -> torch.Tensor:
        """[R, L, h*w] float32 (L: the longest prompt's length): the attention of every image position on
        every prompt position (key j of the call is position j % the prompt's length: the repeats summed),
        averaged over heads, summed over the conditional chunks."""


@dataclass(frozen=True)
class CrossCallMaps:
    """A UNet cross-attention call as a CrossObservation: q [B, Nq, H*D], k [B, Nk, H*D] with `heads` heads,
    Nq = h * w queries at `factor` (layer_grid); maps by explicit softmax (head_mean_maps)."""

    q: torch.Tensor
    k: torch.Tensor
    heads: int
    prompts: PromptSet
    factor: int
    grid: tuple[int, int]
    step: tuple[int, int]
    chunk_starts: list[int]

    def maps(self) -> torch.Tensor:
        rows = self.prompts.rows
        index = torch.tensor([start + r for start in self.chunk_starts for r in range(rows)], device=self.q.device)
        maps = head_mean_maps(self.q[index], self.k[index], self.heads)
        maps = maps.reshape(len(self.chunk_starts), rows, *maps.shape[1:]).sum(0)  # [R, Nq, Nk]
        longest = max(p.length for p in self.prompts.all)
        out = torch.zeros((rows, longest, maps.shape[1]), device=self.q.device, dtype=torch.float32)
        for row, prompt in enumerate(self.prompts.all):
            out[row, : prompt.length] = fold_positions(maps[row], prompt.length).T
        return out


@dataclass(frozen=True)
class MapRecord:
    """One finished sampling run: its output latent [R, C, H, W] (CPU) and its maps [R, L, h, w] (CPU)."""

    output: torch.Tensor
    maps: torch.Tensor


class MapRecorder:
    """An observer (host/state.py EditState.observers) summing the maps of every prompt position.

    `begin()` before a run, `finish(output)` after it: the run's average maps are kept with the output
    latent, so a later node can find the maps of the samples it is given (`record_for`).
    """

    KEEP = 4
    """Finished runs kept (the same model may sample several times in one graph)."""

    def __init__(self, prompts: PromptSet, factor: int) -> None:
        self.prompts = prompts
        self.factor = factor
        self.records: list[MapRecord] = []
        self.begin()

    def begin(self) -> None:
        self._total: torch.Tensor | None = None
        self._calls = 0
        self._grid: tuple[int, int] = (0, 0)
        self.seen_factors: set[int] = set()

    def observe_cross(self, call: CrossObservation) -> None:
        """Add one call's maps (a UNet cross-attention layer's, or a joint-attention block's image->text
        attention): those of calls at this recorder's factor, or of a model's only grid (factor None)."""
        if not call.chunk_starts:
            return
        if call.factor is not None:
            self.seen_factors.add(call.factor)
            if call.factor != self.factor:
                return
        maps = call.maps()
        if self._total is None or self._grid != call.grid:
            self._total = torch.zeros_like(maps)
            self._calls = 0
            self._grid = call.grid
        self._total += maps
        self._calls += len(call.chunk_starts)

    def average(self) -> torch.Tensor:
        """[R, L, h, w]: mean over heads, layers and model calls so far. ValueError if no layer was seen."""
        if self._total is None:
            raise ValueError(self._missing_layers())
        return (self._total / self._calls).reshape(*self._total.shape[:2], *self._grid)

    def _missing_layers(self) -> str:
        seen = ", ".join(f"1/{8 * f}" for f in sorted(self.seen_factors)) or "none"
        return (
            f"no cross-attention layer of this model works at 1/{8 * self.factor} of the image side at this "
            f"image size (layers seen at: {seen} of the image side); pick another resolution"
        )

    def finish(self, output: torch.Tensor) -> MapRecord:
        record = MapRecord(output.detach().to("cpu", copy=True), self.average().cpu())
        self.records = [*self.records[-(self.KEEP - 1) :], record]
        return record

    def record_for(self, samples: torch.Tensor) -> MapRecord | None:
        """The latest run whose output is exactly `samples`, if any."""
        samples = samples.detach().cpu()
        for record in reversed(self.records):
            if record.output.shape == samples.shape and torch.equal(record.output, samples.to(record.output.dtype)):
                return record
        return None


def phrase_map(maps: torch.Tensor, positions: list[int]) -> torch.Tensor:
    """[L, h, w] maps of one prompt -> [h, w], the sum over the phrase's positions."""
    return maps[positions].sum(0)


HEAT_COLORS = torch.tensor(
    [[0.0, 0.0, 0.5], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]]
)
"""A jet-like colour ramp from 0 (dark blue) to 1 (dark red)."""


def heat_colors(values: torch.Tensor) -> torch.Tensor:
    """[...] in 0..1 -> [..., 3] RGB along HEAT_COLORS."""
    ramp = HEAT_COLORS.to(values.device)
    scaled = values.clamp(0, 1) * (len(ramp) - 1)
    low = scaled.floor().long().clamp(max=len(ramp) - 2)
    frac = (scaled - low)[..., None]
    return ramp[low] * (1 - frac) + ramp[low + 1] * frac


def heat_panels(maps: torch.Tensor, size: tuple[int, int], images: torch.Tensor | None = None) -> torch.Tensor:
    """[R, G, h, w] maps -> [R, H, G*W, 3]: one panel per map, each normalised by its max and upsampled
    (bilinear) to `size`; laid over `images` [R, H, W, 3] at half strength when given."""
    rows, groups = maps.shape[:2]
    flat = maps.reshape(rows * groups, 1, *maps.shape[2:]).float()
    flat = flat / flat.amax((2, 3), keepdim=True).clamp_min(torch.finfo(flat.dtype).tiny)
    up = torch.nn.functional.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    panels = heat_colors(up[:, 0]).reshape(rows, groups, *size, 3)
    if images is not None:
        panels = 0.5 * panels + 0.5 * images[:, None].to(panels)
    return panels.permute(0, 2, 1, 3, 4).reshape(rows, size[0], groups * size[1], 3)
