"""Local blend (paper section 3.2): keep the target equal to the source outside the edited words.

The mask of a word on a row is built from its averaged cross-attention map [h, w] (maps.py):
max-pool 3x3, normalise by the max, upsample (bilinear) to the latent [H, W], threshold. Each word
gets its own mask and the masks are united (the paper sums the words' maps before normalising,
which lets a strongly attended word hide a weak one). A target row's mask is the union of the
source words' masks on the source row and the target words' masks on that target row, as the paper
unites the source and target masks. The maps are those averaged over every step so far, the
current one included (the paper's running attention store), not the current step's alone.
A mask of the user's own ([M, H', W'] in 0..1 at any size, M = 1 or one per target; a position is in
it where more than half of its area is) is used instead of the words' mask, or united or intersected
with it (`OWN_MASK_MODES`). The blend of a batch [R, C, H, W] (row 0 source):

    x_tgt = x_src + mask * (x_tgt - x_src)        (a binary mask: torch.where, exact where mask = 0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .maps import MapRecorder, phrase_map
from .tokens import PromptSet, find_word


def word_masks(maps: torch.Tensor, size: tuple[int, int], threshold: float) -> torch.Tensor:
    """[N, h, w] word maps -> [N, H, W] bool: max-pool 3x3, / max, bilinear to `size`, > threshold."""
    pooled = F.max_pool2d(maps[:, None].float(), kernel_size=3, stride=1, padding=1)
    pooled = pooled / pooled.amax((2, 3), keepdim=True).clamp_min(torch.finfo(pooled.dtype).tiny)
    return F.interpolate(pooled, size=size, mode="bilinear", align_corners=False)[:, 0] > threshold


def gaussian_smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """[N, h, w] -> [N, h, w]: each map convolved with a normalised 3x3 Gaussian of `sigma` positions,
    g(d) = exp(-d^2 / (2 sigma^2)) / sum (edges replicated, so a map's total and its border keep their level)."""
    offsets = torch.tensor([-1.0, 0.0, 1.0], device=maps.device)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = torch.outer(weights, weights)
    kernel = (kernel / kernel.sum())[None, None]
    padded = F.pad(maps[:, None].float(), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kernel)[:, 0]


OWN_MASK_MODES = ("replace", "union", "intersect")
"""How a mask of the user's own meets the words' mask: instead of it, united with it, intersected with it."""


def own_masks(mask: torch.Tensor, size: tuple[int, int], targets: int) -> torch.Tensor:
    """[M, H', W'] in 0..1 (M = 1 or `targets`) -> [targets, H, W] bool: in where over half the area is."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or mask.shape[0] not in (1, targets):
        raise ValueError(f"mask: {tuple(mask.shape)} is not one mask [H, W] or one per target [{targets}, H, W]")
    area = F.interpolate(mask[:, None].float(), size=size, mode="area")[:, 0] > 0.5
    return area.expand(targets, *size)


def split_words(text: str) -> list[str]:
    """'cat, red hat' -> ['cat', 'red hat']."""
    return [word.strip() for word in text.split(",") if word.strip()]


class LocalBlender(MapRecorder):
    """A MapRecorder that also blends: `mask(size)` from the maps so far (and the user's own mask),
    `blend(x, mask)` on a batch."""

    def __init__(
        self,
        prompts: PromptSet,
        factor: int,
        source_words: list[str],
        target_words: list[str],
        threshold: float,
        start: float,
        own_mask: torch.Tensor | None = None,
        own_mask_mode: str = "replace",
    ) -> None:
        if not prompts.targets:
            raise ValueError("local blend needs at least one target prompt")
        if own_mask_mode not in OWN_MASK_MODES:
            raise ValueError(f"mask_mode: {own_mask_mode!r} is not one of {', '.join(OWN_MASK_MODES)}")
        if own_mask is not None and own_mask_mode == "replace":
            source_words, target_words = [], []  # the mask stands instead of the words
        elif not source_words and not target_words:
            raise ValueError("local blend: give at least one word (source_words or target_words)")
        if not 0.0 <= threshold <= 1.0 or not 0.0 <= start <= 1.0:
            raise ValueError(f"local blend: threshold {threshold} and blend_start {start} must lie in 0..1")
        if own_mask is not None and (own_mask.numel() == 0 or not torch.isfinite(own_mask).all()):
            raise ValueError("mask: the mask is empty or holds NaN / infinite values")
        super().__init__(prompts, factor)
        self.own_mask = own_mask
        self.own_mask_mode = own_mask_mode
        self.source_positions = [find_word([prompts.source], word, "source_words")[0] for word in source_words]
        found = [find_word(prompts.targets, word, "target_words") for word in target_words]
        self.target_positions = [
            [per_target[t] for per_target in found if per_target[t] is not None] for t in range(len(prompts.targets))
        ]
        """Per target, the positions of each target word found in it."""
        self.threshold = threshold
        self.start = start
        self.last_mask: torch.Tensor | None = None
        """The mask [T, 1, H, W] of the last `mask` call: after a run, the one the output was blended with."""

    def active(self, step: int, steps: int) -> bool:
        """Whether the blend acts at this step (from int(start * steps) on, as the reference counts)."""
        return step >= int(self.start * steps)

    def mask(self, size: tuple[int, int]) -> torch.Tensor:
        """[T, 1, H, W] bool: per target row, the union of its own and the source's word masks, met with
        the user's own mask (OWN_MASK_MODES)."""
        targets = len(self.target_positions)
        own = None if self.own_mask is None else own_masks(self.own_mask, size, targets)
        if own is not None and self.own_mask_mode == "replace":
            self.last_mask = own[:, None]
            return self.last_mask
        words = self._word_masks(size)
        if own is not None:
            own = own.to(words.device)
            words = words | own if self.own_mask_mode == "union" else words & own
        self.last_mask = words[:, None]
        return self.last_mask

    def _word_masks(self, size: tuple[int, int]) -> torch.Tensor:
        """[T, H, W] bool: per target row, the union of its own and the source's word masks."""
        maps = self.average()
        height, width = size
        source = torch.zeros((height, width), dtype=torch.bool, device=maps.device)
        if self.source_positions:
            words = torch.stack([phrase_map(maps[0], p) for p in self.source_positions])
            source = word_masks(words, size, self.threshold).any(0)
        masks = []
        for row, positions in enumerate(self.target_positions, start=1):
            own = source
            if positions:
                words = torch.stack([phrase_map(maps[row], p) for p in positions])
                own = own | word_masks(words, size, self.threshold).any(0)
            masks.append(own)
        return torch.stack(masks)

    @staticmethod
    def blend(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[R, C, H, W] -> the same with every target row equal to row 0 where `mask` [R-1, 1, H, W] is 0."""
        source = x[:1]
        return torch.cat([source, torch.where(mask.to(x.device), x[1:], source)])
