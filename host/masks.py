"""AttentionMaskExtract's work: masks, labelled heat-map panels and a coverage report of chosen words,
from the maps a recorder filed with the samples (paper figure 4)."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont

from ..p2p_core.blending import split_words, word_masks
from ..p2p_core.maps import heat_panels, phrase_map
from ..p2p_core.tokens import PromptSet
from .errors import UserError
from .recording import find_record


def _word_positions(prompts: PromptSet, words: list[str]) -> list[list[list[int] | None]]:
    """[word][row] positions of each word in each prompt (None where absent); an error for a word in none."""
    found = []
    for word in words:
        per_row = []
        for prompt in prompts.all:
            try:
                per_row.append(prompt.find_phrase(word))
            except ValueError:
                per_row.append(None)
        if all(p is None for p in per_row):
            listing = "; ".join(
                f"{'source' if row == 0 else f'target {row}'}: {' '.join(p.words)}" for row, p in enumerate(prompts.all)
            )
            raise UserError(f"AttentionMaskExtract: the word {word!r} is in none of the prompts ({listing})")
        found.append(per_row)
    return found


def _labels(words: list[str], present: list[bool], panel_width: int) -> torch.Tensor:
    """[label_h, len(words) * panel_width, 3]: each word written under its panel."""
    height = max(14, panel_width // 10)
    try:
        font = ImageFont.load_default(size=max(10, height * 3 // 4))
    except TypeError:  # Pillow before 10.1: one bitmap size
        font = ImageFont.load_default()
    strip = Image.new("RGB", (panel_width * len(words), height), "white")
    draw = ImageDraw.Draw(strip)
    for i, (word, there) in enumerate(zip(words, present, strict=True)):
        text = word if there else f"{word} (not in prompt)"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        origin = (i * panel_width + (panel_width - right + left) // 2 - left, (height - bottom + top) // 2 - top)
        draw.text(origin, text, fill="black", font=font)
    return torch.frombuffer(bytearray(strip.tobytes()), dtype=torch.uint8).reshape(height, -1, 3).float() / 255


def _describe(row: int, prompts: PromptSet, mask: torch.Tensor, words: list[str]) -> str:
    name = "source" if row == 0 else f"target {row}"
    if not words:
        return f"{name}: EMPTY mask (none of the words is in {prompts.all[row].text!r})"
    share = float(mask.float().mean())
    if share == 0.0:
        return f"{name}: EMPTY mask for {', '.join(words)} (lower the threshold)"
    if share == 1.0:
        return f"{name}: FULL mask for {', '.join(words)} (raise the threshold)"
    return f"{name}: mask covers {share:.0%} of the image ({', '.join(words)})"


def extract_masks(
    model,
    samples: torch.Tensor,
    prompts: PromptSet,
    words: str,
    threshold: float,
    upscale: int = 8,
    images: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(masks [B, H, W], heat-map strips [B, H + label_h, W * words, 3], one report line per row) of the
    comma-separated `words`, from the maps `model` recorded while sampling `samples` [B, C, h, w];
    H, W = h * upscale, w * upscale. A row's mask unites its words' masks (map > threshold * max)."""
    chosen = split_words(words)
    if not chosen:
        raise UserError("AttentionMaskExtract: no word given (e.g. 'cat, hat')")
    positions = _word_positions(prompts, chosen)
    record = find_record(model, samples, prompts)
    size = (record.output.shape[-2] * upscale, record.output.shape[-1] * upscale)
    rows, grid = prompts.rows, record.maps.shape[-2:]
    maps = torch.zeros((rows, len(chosen), *grid))
    for w, per_row in enumerate(positions):
        for row, found in enumerate(per_row):
            if found is not None:
                maps[row, w] = phrase_map(record.maps[row], found)
    masks, lines, strips = [], [], []
    if images is not None:
        images = torch.nn.functional.interpolate(
            images.movedim(-1, 1).float(), size=size, mode="bilinear", align_corners=False
        ).movedim(1, -1)
        images = images.expand(rows, -1, -1, -1) if images.shape[0] == 1 else images
        if images.shape[0] != rows:
            raise UserError(f"AttentionMaskExtract: {images.shape[0]} images for {rows} samples")
    panels = heat_panels(maps, size, images)
    for row in range(rows):
        present = [w for w, per_row in enumerate(positions) if per_row[row] is not None]
        mask = torch.zeros(size, dtype=torch.bool)
        if present:
            mask = word_masks(maps[row, present], size, threshold).any(0)
        masks.append(mask.float())
        lines.append(_describe(row, prompts, mask, [chosen[w] for w in present]))
        labels = _labels(chosen, [per_row[row] is not None for per_row in positions], size[1])
        strips.append(torch.cat([panels[row], labels]))
    return torch.stack(masks), torch.stack(strips), lines
