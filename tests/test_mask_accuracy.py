"""Attention masks against the object's true pixels, on the trained demo model.

The demo model draws one flat shape on a flat background; the demo's detector (`demo/detect.py`,
checked against the drawn scenes' own masks in test_demo_model.py) reads the object's pixels back from
the sampled image. The mask of the shape's word must overlap those pixels (IoU) better than chance:
a mask of the same area that knows nothing about the object has the expected IoU
`a * t / (a + t - a * t)` (a, t: the mask's and the object's share of the image). A full mask, an
empty one, or one placed anywhere but on the object is at or below it. (The demo's maps are not
sharp enough for a word-against-word comparison: the map of "background" overlaps the shape about
as much.) The maps are coarse (8 x 8 on the
32 x 32 demo images, the paper's 1/32 layers), so the masks are wider than the shapes: IoU 0.2-0.5.
"""

from __future__ import annotations

import pytest

from demo.detect import detect
from devtools.graphs import add_mask_extract, edit_graph, read_pngs

THRESHOLD = 0.5
"""Half of each word's maximum (the max-normalised map's half-max)."""


def iou_and_chance(mask, truth) -> tuple[float, float]:
    a, t = mask.mean(), truth.mean()
    return float((mask & truth).sum() / (mask | truth).sum()), float(a * t / (a + t - a * t))


@pytest.mark.parametrize("seed", [1])
@pytest.mark.parametrize(
    "source, target",
    [
        ("a red circle on a blue background", "a red square on a blue background"),
        ("a yellow triangle on a black background", "a yellow diamond on a black background"),
    ],
)
def test_the_shape_words_mask_finds_the_shape(comfy, captured, seed, source, target):
    shapes = [source.split()[2], target.split()[2]]
    graph = edit_graph(
        source=source,
        target=target,
        loader={"class_type": "P2PDemoModelLoader", "inputs": {}},
        chain=[("AttentionMapRecorder", {})],
        steps=20,
        scheduler="simple",
        seed=seed,
        width=32,
        height=32,
    )
    graph["latent"] = {"class_type": "P2PDemoEmptyLatent", "inputs": {"width": 32, "height": 32, "batch_size": 1}}
    words = ", ".join(shapes)
    outputs = comfy.run_graph(add_mask_extract(graph, ["chain0", 0], words, THRESHOLD, upscale=1))
    masks = read_pngs(outputs["mask_preview"]["images"])[..., 0].numpy() > 127
    for row, (shape, latent) in enumerate(zip(shapes, captured["out"], strict=True)):
        found = detect(((latent + 1) / 2).clamp(0, 1))
        assert [o.shape for o in found.objects] == [shape], f"row {row}: the demo model drew {found.objects}"
        truth = found.objects[0].mask
        iou, chance = iou_and_chance(masks[row], truth)
        assert iou > chance, f"row {row} ({shape}): IoU {iou:.2f} is no better than chance ({chance:.2f})"
