"""The README's first command (scripts/run_workflows.py): every image a workflow shows, labelled."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from devtools import harness
from scripts import run_workflows


def test_the_demo_writes_every_shown_image_with_its_caption(tmp_path) -> None:
    """The attention-maps workflow saves the images and previews heat maps and masks: all three rows are
    on its sheet, each under its node's title."""
    workflow = json.loads((harness.REPO / "workflows" / "p2p_attention_maps.json").read_text())
    harness.boot(fixture_nodes=False)
    outputs = harness.run_graph(run_workflows.to_api(workflow))
    shown = run_workflows.shown_images(outputs, run_workflows.node_titles(workflow))
    assert [caption for caption, _ in shown] == [
        "Save (source, then targets) (saved)",
        "Heat maps (one panel per word) (preview)",
        "Masks (preview)",
    ]
    assert [len(images) for _, images in shown] == [2, 2, 2]
    sheet = Image.open(run_workflows.contact_sheet(shown, tmp_path / "sheet.png"))
    assert sheet.height >= 3 * run_workflows.ROW_HEIGHT
    assert sheet.width >= max(sum(i.width for i in images) for _, images in shown)


@pytest.mark.parametrize("panel_width, least_ink", [(32, 5), (256, 12), (1024, 40)])
def test_heat_map_labels_are_legible_and_fit_their_panel(comfy, panel_width: int, least_ink: int) -> None:
    """At 32 px panels, at the demo workflows' 256 px and at 1024 px: a strip of at least 24 px, each word's
    ink inside its own panel and at least `least_ink` px high."""
    strip = comfy.pack("host.masks")._labels(["circle", "triangle"], [True, False], panel_width)
    assert strip.shape[0] >= 24 and strip.shape[1] == 2 * panel_width
    ink = strip.mean(-1) < 0.9
    for panel in range(2):
        columns = ink[:, panel * panel_width : (panel + 1) * panel_width]
        rows = columns.any(1).nonzero()
        assert rows.numel() and int(rows.max() - rows.min()) + 1 >= least_ink
        assert not columns[:, 0].any() and not columns[:, -1].any(), "the label runs into the next panel"
    assert torch.isfinite(strip).all()
