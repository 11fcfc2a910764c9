"""LocalBlend's `mask` input: a mask of the user's own instead of the words' mask, or united / intersected
with it, at any size; outside the final mask the target equals the source exactly."""

from __future__ import annotations

import pytest
import torch
from test_local_blend import blend_graph

from devtools.graphs import read_pngs

WIDTH, HEIGHT = 320, 192
BOX = (64, 32, 128, 96)
"""x, y, width, height of the user's rectangle in image pixels (whole latent pixels: multiples of 16)."""


def with_own_mask(graph: dict, mode: str, scale: int = 1) -> dict:
    """The graph's LocalBlend given a rectangle mask made by stock mask nodes, at 1/`scale` of the image."""
    size = {"width": WIDTH // scale, "height": HEIGHT // scale}
    x, y, w, h = (v // scale for v in BOX)
    graph["mask_bg"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, **size}}
    graph["mask_box"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": w, "height": h}}
    graph["own_mask"] = {
        "class_type": "MaskComposite",
        "inputs": {
            "destination": ["mask_bg", 0],
            "source": ["mask_box", 0],
            "x": x,
            "y": y,
            "operation": "add",
        },
    }
    blend = next(node for node in graph.values() if node["class_type"] == "LocalBlend")
    blend["inputs"].update(mask=["own_mask", 0], mask_mode=mode)
    return graph


def box_in_latent() -> torch.Tensor:
    box = torch.zeros(HEIGHT // 8, WIDTH // 8, dtype=torch.bool)
    x, y, w, h = (v // 8 for v in BOX)
    box[y : y + h, x : x + w] = True
    return box


@pytest.mark.parametrize("scale", [1, 2])
def test_the_own_mask_replaces_the_words(comfy, captured, scale):
    """Only the rectangle may change, whatever the words' maps say and at the mask's own size."""
    comfy.run_graph(with_own_mask(blend_graph(width=WIDTH, height=HEIGHT), "replace", scale))
    source, target = captured["out"]
    box = box_in_latent()
    assert torch.equal(target[:, ~box], source[:, ~box])
    assert (target != source).any(0)[box].float().mean() > 0.5


@pytest.mark.parametrize("mode", ["union", "intersect"])
def test_the_own_mask_meets_the_words_mask(comfy, captured, mode):
    outputs = comfy.run_graph(with_own_mask(blend_graph(width=WIDTH, height=HEIGHT), mode))
    masks = read_pngs(outputs["mask_preview"]["images"])[..., 0] > 127
    words = masks[0] | masks[1]
    box = box_in_latent()
    assert 0.0 < (words & ~box).float().mean() and 0.0 < (box & ~words).float().mean(), "the test needs overlap"
    final = words | box if mode == "union" else words & box
    source, target = captured["out"]
    assert torch.equal(target[:, ~final], source[:, ~final])
    # The words' part of the mask grows while sampling (running maps): positions it takes late differ little.
    assert (target != source).any(0)[final].any()


def test_a_mask_of_the_wrong_batch_is_named(comfy):
    graph = with_own_mask(blend_graph(width=WIDTH, height=HEIGHT), "replace")
    graph["mask_batch"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["mask_image_own", 0], "amount": 3}}
    graph["mask_image_own"] = {"class_type": "MaskToImage", "inputs": {"mask": ["own_mask", 0]}}
    graph["mask_back"] = {"class_type": "ImageToMask", "inputs": {"image": ["mask_batch", 0], "channel": "red"}}
    next(n for n in graph.values() if n["class_type"] == "LocalBlend")["inputs"]["mask"] = ["mask_back", 0]
    with pytest.raises(comfy.GraphError) as error:
        comfy.run_graph(graph)
    assert "mask" in error.value.message and "one per target" in error.value.message
