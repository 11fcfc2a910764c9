"""The pack's registry icon and banner, and the pictures of its node-docs pages, all from the demo's outputs.

Run from the repository root after `bash scripts/demo.sh` has refreshed `docs/*_result.png`:

    .venv/bin/python -m scripts.make_pack_images

- `docs/icon.png` (400x400): a demo scene, its word swap and two other edits, one per tile.
- `docs/banner.png` (1344x576, 21:9): the pack's name above a row of edits, each captioned with the
  words it changed.
- `web/docs/images/<workflow>.png`: byte copies of `docs/<workflow>_result.png`. The node-docs panel
  resolves a page's relative image paths against `/extensions/<pack>/docs/`, and the server serves only
  the files under `web/` there (it follows no link out of it), so the pictures live there too.

A result image is one row of 192x192 tiles (a 32x32 scene scaled 6x), 8 px apart, source first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs"
DOC_IMAGES = REPO / "web" / "docs" / "images"
ICON = REPO / "docs" / "icon.png"
BANNER = REPO / "docs" / "banner.png"

TILE = 192
GAP = 8
BACKGROUND = (24, 26, 32)
TEXT = (236, 236, 240)
MUTED = (160, 164, 176)

# (result image, tile index): a source scene, its word swap, and two other edits.
ICON_TILES = [("p2p_word_swap", 0), ("p2p_word_swap", 1), ("p2p_refine", 1), ("p2p_local_blend", 1)]
# (result image, tile index, caption): a source scene, then edits, each captioned with what changed.
BANNER_TILES = [
    ("p2p_word_swap", 0, "a red circle"),
    ("p2p_word_swap", 1, "circle -> triangle"),
    ("p2p_refine", 1, "+ striped"),
    ("p2p_local_blend", 1, "circle -> diamond"),
    ("p2p_reweight_fader", 5, "striped blue x4"),
    ("p2p_demo_real_image_edit", 2, "yellow -> red"),
]


def result_names() -> list[str]:
    """The workflows that have a result image in docs/ (`docs/<name>_result.png`)."""
    return sorted(path.name.removesuffix("_result.png") for path in RESULTS.glob("*_result.png"))


def tile(name: str, index: int) -> Image.Image:
    """Tile `index` (0 = source) of `docs/<name>_result.png`, a 192x192 RGB image."""
    row = Image.open(RESULTS / f"{name}_result.png").convert("RGB")
    left = index * (TILE + GAP)
    if left + TILE > row.width:
        raise ValueError(f"docs/{name}_result.png has no tile {index} (it is {row.width} px wide)")
    return row.crop((left, 0, left + TILE, TILE))


def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's own scalable font, the same on every machine."""
    return ImageFont.load_default(size=size)


def caption(draw: ImageDraw.ImageDraw, centre_x: int, top: int, text: str, size: int, fill: tuple) -> None:
    draw.text((centre_x, top), text, font=font(size), fill=fill, anchor="ma")


def make_icon() -> Image.Image:
    """400x400: a 2x2 grid of 192 px tiles (no text: the registry shows the icon small)."""
    icon = Image.new("RGB", (400, 400), BACKGROUND)
    origins = [(5, 5), (203, 5), (5, 203), (203, 203)]
    for (name, index), origin in zip(ICON_TILES, origins, strict=True):
        icon.paste(tile(name, index), origin)
    return icon


def make_banner() -> Image.Image:
    """1344x576 (21:9): title and subtitle above a row of six captioned tiles."""
    banner = Image.new("RGB", (1344, 576), BACKGROUND)
    draw = ImageDraw.Draw(banner)
    caption(draw, banner.width // 2, 64, "Prompt-to-Prompt for ComfyUI", 64, TEXT)
    caption(draw, banner.width // 2, 148, "edit an image by editing its prompt", 32, MUTED)
    pitch = TILE + 24
    left = (banner.width - len(BANNER_TILES) * pitch + 24) // 2
    for i, (name, index, words) in enumerate(BANNER_TILES):
        x = left + i * pitch
        banner.paste(tile(name, index), (x, 240))
        caption(draw, x + TILE // 2, 448, words, 22, TEXT if i else MUTED)
    return banner


def copy_doc_images() -> list[Path]:
    """Copy every `docs/<name>_result.png` to `web/docs/images/<name>.png`; the copies written."""
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    written = []
    for name in result_names():
        target = DOC_IMAGES / f"{name}.png"
        shutil.copyfile(RESULTS / f"{name}_result.png", target)
        written.append(target)
    return written


def main() -> None:
    make_icon().save(ICON, optimize=True)
    make_banner().save(BANNER, optimize=True)
    for path in [ICON, BANNER, *copy_doc_images()]:
        print(path.relative_to(REPO))


if __name__ == "__main__":
    main()
