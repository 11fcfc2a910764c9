"""benchmarks/piebench.py: PIE-Bench's masks and metrics, and the benchmark end to end through the real server on a
small set drawn from the demo scenes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchmarks import piebench
from devtools.server import free_port

STEPS = 8  # measured at 8: pinned 19.9 dB, p2p 16.0, naive 14.3; at 4 steps the edit is too coarse (pinned < naive)
DEMO_IMAGES = 2


def test_a_mask_survives_encoding_and_decoding() -> None:
    """Random blobs, runs touching the first and last pixel included: decode(encode(m)) = m, and with the border
    (as PIE-Bench decodes) m plus the first and last rows and columns."""
    gen = np.random.default_rng(0)
    for shape in [(32, 32), (48, 64)]:
        mask = gen.random(shape) < 0.3
        mask[0, 0] = mask[-1, -1] = True
        rle = piebench.encode_mask(mask)
        assert len(rle) % 2 == 0 and all(isinstance(v, int) for v in rle)
        assert np.array_equal(piebench.decode_mask(rle, shape, border=False), mask)
        framed = piebench.decode_mask(rle, shape)
        assert framed[[0, -1]].all() and framed[:, [0, -1]].all()
        assert np.array_equal(framed[1:-1, 1:-1], mask[1:-1, 1:-1])


def test_a_mask_run_is_read_row_by_row() -> None:
    """PIE-Bench's code: (start, length) over the image flattened row by row; a run past the end stops there."""
    mask = piebench.decode_mask([3, 4, 14, 10], (4, 4), border=False)
    expected = np.zeros(16, dtype=bool)
    expected[3:7] = True
    expected[14:] = True
    assert np.array_equal(mask, expected.reshape(4, 4))
    with pytest.raises(ValueError, match="mask: run \\(16, 1\\) is outside a 4x4 image"):
        piebench.decode_mask([16, 1], (4, 4))
    with pytest.raises(ValueError, match="mask: 3 numbers"):
        piebench.decode_mask([1, 2, 3], (4, 4))


def test_the_background_metrics() -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 24, 24, generator=gen)
    keep = torch.ones(24, 24)
    assert piebench.background_mse(image, image, keep) == 0.0
    assert piebench.psnr(0.0) == piebench.PSNR_CAP
    assert piebench.ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    # A known error: 0.1 everywhere in the background, half the image; the edited half does not count.
    keep[:, 12:] = 0.0
    shifted = image + 0.1
    shifted[:, :, 12:] = torch.rand(3, 24, 12, generator=gen)
    assert piebench.background_mse(shifted, image, keep) == pytest.approx(0.01 / 2, rel=1e-5)
    assert piebench.psnr(0.01) == pytest.approx(20.0)
    assert piebench.background_ssim(shifted, image, keep) < 1.0
    # SSIM of a constant offset on a flat image: only the luminance term, (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1).
    flat = torch.full((3, 16, 16), 0.5, dtype=torch.float64)
    c1 = 0.01**2
    assert piebench.ssim(flat + 0.1, flat) == pytest.approx((2 * 0.6 * 0.5 + c1) / (0.6**2 + 0.5**2 + c1), rel=1e-9)
    with pytest.raises(ValueError, match="smaller than the 11x11 window"):
        piebench.ssim(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))


def test_the_demo_set_is_in_pie_benchs_format(tmp_path) -> None:
    """Seeded: the same files twice; the mask is the edited object of source and target, the prompts name the
    blended words."""
    keys = piebench.make_demo_set(tmp_path / "a", count=4)
    piebench.make_demo_set(tmp_path / "b", count=4)
    assert (tmp_path / "a" / "mapping_file.json").read_text() == (tmp_path / "b" / "mapping_file.json").read_text()
    edits = piebench.load_mapping(tmp_path / "a")
    assert [e.key for e in edits] == keys
    for edit in edits:
        source_word, target_word = edit.blended
        assert source_word in edit.source.split() and target_word in edit.target.split()
        assert edit.source.replace(source_word, target_word, 1) == edit.target
        mask = piebench.decode_mask(edit.mask_rle, (piebench.DEMO_SIZE, piebench.DEMO_SIZE), border=False)
        assert 0.02 < mask.mean() < 0.5
    item = json.loads((tmp_path / "a" / "mapping_file.json").read_text())[keys[0]]
    assert "[" in item["editing_prompt"] and set(item) >= {"image_path", "original_prompt", "mask", "blended_word"}


@pytest.fixture(scope="module")
def run(comfy_server, tmp_path_factory) -> tuple[str, list[dict]]:
    """The benchmark on a small demo set through the server, every method: (printed, records)."""
    import contextlib
    import io

    folder = tmp_path_factory.mktemp("piebench")
    piebench.make_demo_set(folder / "set", count=DEMO_IMAGES)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        piebench.main([str(folder / "set"), "--server", comfy_server.url, "--model", "demo", "--steps", str(STEPS),
                       "--method", "pinned", "p2p", "naive", "--out", str(folder / "figures.json")])
    return printed.getvalue(), json.loads((folder / "figures.json").read_text())


def test_the_benchmark_prints_pie_benchs_table(run) -> None:
    printed, records = run
    assert all(column in printed for column in piebench.HEADER)
    for name in piebench.PUBLISHED:
        assert name in printed
    assert "69.43" in printed and "84.76" in printed
    assert f"pinned (demo, {DEMO_IMAGES} images)" in printed and f"naive (demo, {DEMO_IMAGES} images)" in printed
    assert len(records) == 3 * DEMO_IMAGES and not any("error" in r for r in records)
    for r in records:
        assert all(math.isfinite(r[m]) for m in ("psnr", "mse", "ssim")), r
    for metric, scorer in piebench.model_scorers("cpu").items():  # here: no lpips, no CLIP or DINO weights
        if scorer.score is None:
            assert f"skipped {metric}: {scorer.reason}" in printed
        else:
            assert all(math.isfinite(r[metric]) for r in records)


def test_pinned_p2p_keeps_the_background_better_than_plain_p2p_and_the_naive_edit(run) -> None:
    """Outside the edit mask the pinned source branch holds the photo and LocalBlend keeps the target there; plain
    P2P's source branch drifts from the photo, and the target prompt alone from the same inverted noise redraws
    the background. (With the edit nodes doing nothing, pinned and p2p are the same graph: equal figures.)"""
    _, records = run

    def mean(method: str, metric: str) -> float:
        return float(np.mean([r[metric] for r in records if r["method"] == method]))

    for metric in ("psnr", "ssim"):
        assert mean("pinned", metric) > mean("p2p", metric), metric
        assert mean("pinned", metric) > mean("naive", metric), metric


def test_bad_input_is_named(comfy_server, tmp_path) -> None:
    """A checkpoint the server does not have, a folder without a mapping file, no server, an entry without its
    mask."""
    with pytest.raises(SystemExit, match="--model: the server has no checkpoint 'nope.safetensors'"):
        piebench.loader_node(comfy_server, "nope.safetensors")
    with pytest.raises(SystemExit, match="no mapping_file.json"):
        piebench.load_mapping(tmp_path)
    keys = piebench.make_demo_set(tmp_path, count=1)
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SystemExit, match=f"--server: no ComfyUI answers at {nobody}"):
        piebench.main([str(tmp_path), "--server", nobody])
    mapping = json.loads((tmp_path / "mapping_file.json").read_text())
    del mapping[keys[0]]["mask"]
    (tmp_path / "mapping_file.json").write_text(json.dumps(mapping))
    with pytest.raises(SystemExit, match=f"entry '{keys[0]}' has no mask"):
        piebench.load_mapping(tmp_path)
