"""A small slice of benchmarks/quality.py on the demo model: every effect points the right way.

Few seeds, so the thresholds are loose; the benchmark itself measures them on 100 seeds, at Prompt-to-Prompt's
50 steps and cfg 7.5. The slice samples near the demo workflows' settings instead (fewer steps, cfg 5), to stay
quick.
"""

from __future__ import annotations

import numpy as np
import pytest

SEEDS = 3
DEMO_SETTINGS = {"steps": 16, "cfg": 5.0}  # near the demo workflows' 20 steps at cfg 5, and quick


@pytest.fixture(scope="module")
def quality(comfy):
    from benchmarks import quality as module

    return module


@pytest.fixture(scope="module")
def edits(quality):
    return quality.edit_benchmark(SEEDS, quality.Sampling(**DEMO_SETTINGS))


def _mean(values: list[float]) -> float:
    return float(np.nanmean(values))


@pytest.mark.parametrize("edit", ["word swap: colour", "word swap: shape", "refine: add 'striped'"])
def test_p2p_keeps_the_layout_better_than_the_baseline(edits, edit: str) -> None:
    p2p, baseline = edits[edit]["P2P"], edits[edit]["baseline"]
    assert _mean(p2p.iou) >= 0.7
    assert _mean(p2p.iou) > _mean(baseline.iou) + 0.1
    assert _mean(p2p.mask_iou) > _mean(baseline.mask_iou)  # against the source's own outlines too
    assert _mean(p2p.shift) < _mean(baseline.shift)
    assert _mean(p2p.success) >= 2 / 3


def test_local_blend_keeps_the_background(edits) -> None:
    blend = edits["word swap: colour + local blend"]["P2P"]
    assert _mean(blend.background) >= 35.0
    assert _mean(blend.success) >= 2 / 3


def test_real_image_is_reconstructed_and_edited(edits) -> None:
    p2p, baseline = edits["real image: colour swap"]["P2P"], edits["real image: colour swap"]["baseline"]
    assert min(p2p.reconstruction) >= 30.0
    assert _mean(p2p.iou) > _mean(baseline.iou)
    assert _mean(p2p.success) >= 2 / 3


def test_fader_is_monotone(quality) -> None:
    means, measured = quality.fader_in_parallel(2, quality.Sampling(**DEMO_SETTINGS), workers=1)
    assert measured == 2  # both sources draw the colour: no seed left out
    means = means["P2P"]
    strength = dict(zip(quality.FADER_WEIGHTS, means, strict=True))
    assert strength[-2.0] < 0.5 < strength[1.0] <= strength[4.0] + 1e-6
    assert strength[-2.0] <= strength[0.0] <= strength[1.0] + 1e-6


def test_success_where_the_source_is_right_counts_only_those_seeds(quality, edits) -> None:
    row = quality.EditRow(success=[1.0, 0.0, 0.0, 1.0], source_right=[1.0, 1.0, 0.0, 0.0])
    assert row.cells()[:2] == ["50%", "50% of 2"]
    for by in edits.values():
        for r in by.values():
            assert len(r.source_right) == len(r.success) == SEEDS
