"""AttentionMaskExtract's work: masks, labelled heat-map panels and a coverage report of chosen words,
from the maps a recorder filed with the samples (paper figure 4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw, ImageFont

from ..p2p_core.blending import split_words, word_masks
from ..p2p_core.maps import heat_panels, phrase_map
from ..p2p_core.tokens import PromptSet, find_word
from .errors import UserError
from .recording import find_record

MIN_LABEL_HEIGHT = 24
"""Pixels of a label strip at least; wider panels get a tenth of their width (legible at 32 px and at 1024 px)."""


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: one bitmap size
        return ImageFont.load_default()


def _fitted(draw: ImageDraw.ImageDraw, texts: list[str], width: int, size: int):
    """(text, font) of the first of `texts` that fits `width` px at a size from `size` down to 8 px; the
    last one cut short (ending in '…') when none does."""
    for text in texts:
        for points in range(size, 7, -1):
            font = _font(points)
            if draw.textlength(text, font=font) <= width:
                return text, font
    text = texts[-1]
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…", font


def _labels(words: list[str], present: list[bool], panel_width: int) -> torch.Tensor:
    """[label_h, len(words) * panel_width, 3]: each word written under its panel, as large as the strip's
    height allows and within its panel's width; a word not in the row's prompt in dark grey, with "(not in
    prompt)" where it fits."""
    height = max(MIN_LABEL_HEIGHT, panel_width // 10)
    strip = Image.new("RGB", (panel_width * len(words), height), "white")
    draw = ImageDraw.Draw(strip)
    for i, (word, there) in enumerate(zip(words, present, strict=True)):
        texts = [word] if there else [f"{word} (not in prompt)", word]
        text, font = _fitted(draw, texts, panel_width - 2, height * 3 // 4)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        origin = (i * panel_width + (panel_width - right + left) // 2 - left, (height - bottom + top) // 2 - top)
        draw.text(origin, text, fill="black" if there else (80, 80, 80), font=font)
    return torch.frombuffer(bytearray(strip.tobytes()), dtype=torch.uint8).reshape(height, -1, 3).float() / 255


@dataclass(frozen=True)
class MaskCoverage:
    """What one row's mask covers: the report AttentionMaskExtract sends to the editor as UI data."""

    row: str
    """"source", "target 1", ..."""
    words: list[str]
    """The chosen words found in this row's prompt."""
    share: float
    """Fraction of the image the mask covers, 0..1."""
    empty: bool
    full: bool

    def text(self, prompt: str) -> str:
        """The report line of this row, for a reader (`prompt`: the row's prompt)."""
        if not self.words:
            return f"{self.row}: EMPTY mask (none of the words is in {prompt!r})"
        words = ", ".join(self.words)
        if self.empty:
            return f"{self.row}: EMPTY mask for {words} (lower the threshold)"
        if self.full:
            return f"{self.row}: FULL mask for {words} (raise the threshold)"
        return f"{self.row}: mask covers {self.share:.0%} of the image ({words})"


def _coverage(row: int, mask: torch.Tensor, words: list[str]) -> MaskCoverage:
    share = float(mask.float().mean()) if words else 0.0
    return MaskCoverage("source" if row == 0 else f"target {row}", words, share, share == 0.0, share == 1.0)


def extract_masks(
    model,
    samples: torch.Tensor,
    prompts: PromptSet,
    words: str,
    threshold: float,
    upscale: int = 8,
    images: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[MaskCoverage]]:
    """(masks [B, H, W], heat-map strips [B, H + label_h, W * words, 3], each row's coverage) of the
    comma-separated `words`, from the maps `model` recorded while sampling `samples` [B, C, h, w];
    H, W = h * upscale, w * upscale. A row's mask unites its words' masks (map > threshold * max)."""
    chosen = split_words(words)
    if not chosen:
        raise UserError("words: no word given (e.g. 'cat, hat')")
    positions = [find_word(prompts.all, word, "words") for word in chosen]
    record = find_record(model, samples, prompts)
    size = (record.output.shape[-2] * upscale, record.output.shape[-1] * upscale)
    rows, grid = prompts.rows, record.maps.shape[-2:]
    maps = torch.zeros((rows, len(chosen), *grid))
    for w, per_row in enumerate(positions):
        for row, found in enumerate(per_row):
            if found is not None:
                maps[row, w] = phrase_map(record.maps[row], found)
    masks, coverage, strips = [], [], []
    if images is not None:
        images = torch.nn.functional.interpolate(
            images.movedim(-1, 1).float(), size=size, mode="bilinear", align_corners=False
        ).movedim(1, -1)
        images = images.expand(rows, -1, -1, -1) if images.shape[0] == 1 else images
        if images.shape[0] != rows:
            raise UserError(f"images: {images.shape[0]} images for {rows} samples")
    panels = heat_panels(maps, size, images)
    for row in range(rows):
        present = [w for w, per_row in enumerate(positions) if per_row[row] is not None]
        mask = torch.zeros(size, dtype=torch.bool)
        if present:
            mask = word_masks(maps[row, present], size, threshold).any(0)
        masks.append(mask.float())
        coverage.append(_coverage(row, mask, [chosen[w] for w in present]))
        labels = _labels(chosen, [per_row[row] is not None for per_row in positions], size[1])
        strips.append(torch.cat([panels[row], labels]))
    return torch.stack(masks), torch.stack(strips), coverage
