"""LocalBlend in the real host: the final target equals the source exactly outside the final mask.

The final mask is read back through the graph: AttentionMaskExtract at latent size (upscale 1)
with the blend's words gives the source row the source words' mask and the target row the target
words' mask, whose union is the blend's mask (the same maps, the same threshold).
"""

import pytest
import torch

from devtools.graphs import add_mask_extract, edit_graph, read_pngs

SOURCE = "a red cat riding a bicycle"
TARGET = "a red cat riding a car"
THRESHOLD = {"sd15": 0.85, "sdxl": 0.95}
"""Near the median of the averaged word maps of the tiny models, so that masks are partial."""


def blend_graph(
    family: str = "sd15",
    width: int = 256,
    height: int = 256,
    edit: str | None = "AttentionReplace",
    before: bool = False,
    blend: dict | None = None,
    loader: dict | None = None,
    steps: int = 4,
    sampler: str = "euler",
) -> dict:
    """Loader -> PromptPair -> edit and LocalBlend (either order) -> KSampler, plus the final mask as PNGs."""
    blend_inputs = {
        "source_words": "bicycle",
        "target_words": "car",
        "threshold": THRESHOLD.get(family, 0.85),
        **(blend or {}),
    }
    window = {"cross_replace": 0.8, "self_replace": 0.4}
    chain = [("LocalBlend", blend_inputs)]
    if edit is not None:
        edit_step = (edit, {"weights": "red=2", **window} if edit == "Reweight" else window)
        chain = [*chain, edit_step] if before else [edit_step, *chain]
    graph = edit_graph(
        family=family,
        source=SOURCE,
        target=TARGET,
        edit=None,
        chain=chain,
        width=width,
        height=height,
        loader=loader,
        steps=steps,
        sampler=sampler,
    )
    model = [f"chain{len(chain) - 1}", 0]
    return add_mask_extract(
        graph,
        model,
        f"{blend_inputs['source_words']}, {blend_inputs['target_words']}",
        blend_inputs["threshold"],
        upscale=1,
    )


def check_blend(outputs: dict, latent: torch.Tensor) -> torch.Tensor:
    """Asserts the target row equals the source row exactly outside the final mask and differs inside
    (`latent` [2, C, H, W], or [2, C, T, H, W] as Qwen-Image's)."""
    latent = latent.flatten(1, -3)
    masks = read_pngs(outputs["mask_preview"]["images"])[..., 0] > 127
    assert masks.shape == (2, *latent.shape[-2:])
    mask = masks[0] | masks[1]
    assert 0.0 < mask.float().mean() < 1.0, "the test needs a partial mask"
    source, target = latent
    assert torch.equal(target[:, ~mask], source[:, ~mask])
    # Inside, positions the mask took in late differ little (tiny SDXL barely hears its prompt): most, not all.
    differs = (target != source).any(0)
    assert differs[mask].float().mean() > 0.5
    return mask


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("width, height", [(256, 256), (320, 320), (320, 192)])
def test_target_equals_source_outside_the_final_mask(comfy, captured, family, width, height):
    outputs = comfy.run_graph(blend_graph(family, width, height))
    latent = captured["out"]
    assert latent.shape == (2, 4, height // 8, width // 8)
    check_blend(outputs, latent)


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "euler_ancestral", "dpmpp_sde", "heun", "lms", "uni_pc", "ddim"])
def test_every_sampler_ends_on_the_source_outside_the_mask(comfy, captured, sampler):
    outputs = comfy.run_graph(blend_graph(sampler=sampler))
    check_blend(outputs, captured["out"])


@pytest.mark.parametrize(
    "edit, before",
    [
        ("AttentionReplace", False),
        ("AttentionReplace", True),
        ("AttentionRefine", False),
        ("AttentionRefine", True),
        ("Reweight", False),
        ("Reweight", True),
        (None, False),
    ],
)
def test_composes_with_every_edit_in_either_order(comfy, captured, edit, before):
    outputs = comfy.run_graph(blend_graph(edit=edit, before=before, width=192, height=256))
    check_blend(outputs, captured["out"])


def test_blend_start_and_resolution(comfy, captured):
    fine = {"blend_start": 0.0, "resolution": "1/16 of the image (32x32 at 512 px)", "threshold": 0.75}
    outputs = comfy.run_graph(blend_graph(blend=fine))
    check_blend(outputs, captured["out"])


def test_the_blend_keeps_the_background_where_the_edit_alone_does_not(comfy, captured):
    """The same edit without LocalBlend changes the background (outside the blend's final mask); with
    it the background is the source's exactly. The source row is the same either way."""
    comfy.run_graph(edit_graph(source=SOURCE, target=TARGET, width=256, height=256))
    unblended = captured["out"]
    outputs = comfy.run_graph(blend_graph())
    blended = captured["out"]
    background = ~check_blend(outputs, blended)
    unblended_error = (unblended[1] - unblended[0])[:, background].abs().mean()
    blended_error = (blended[1] - blended[0])[:, background].abs().mean()
    assert blended_error == 0 < unblended_error
    assert torch.equal(blended[0], unblended[0])


def test_several_words_and_targets(comfy, captured):
    graph = blend_graph(blend={"source_words": "cat, bicycle", "target_words": "car, red"})
    graph["pair"]["inputs"]["target"] = f"{TARGET}\na red cat riding a red car"
    graph["extract"]["inputs"]["words"] = "cat, bicycle, car, red"
    outputs = comfy.run_graph(graph)
    latent = captured["out"]
    assert latent.shape[0] == 3
    masks = read_pngs(outputs["mask_preview"]["images"])[..., 0] > 127
    for row in (1, 2):
        mask = masks[0] | masks[row]
        assert torch.equal(latent[row][:, ~mask], latent[0][:, ~mask])


@pytest.mark.parametrize(
    "inputs, expected",
    [
        ({"source_words": "dog"}, ["'dog'", SOURCE]),
        ({"target_words": "car, plane"}, ["'plane'", TARGET]),
        ({"source_words": "", "target_words": " , "}, ["at least one word"]),
    ],
)
def test_a_missing_word_is_named(comfy, inputs, expected):
    with pytest.raises(comfy.GraphError) as error:
        comfy.run_graph(blend_graph(blend=inputs))
    for text in expected:
        assert text in error.value.message


def test_a_resolution_the_model_lacks_is_named(comfy):
    with pytest.raises(comfy.GraphError) as error:
        comfy.run_graph(blend_graph(blend={"resolution": "1/64 of the image (8x8 at 512 px)"}))
    assert "1/64" in error.value.message and "1/32" in error.value.message


def test_the_unpatched_model_is_unchanged(comfy, captured):
    comfy.run_graph(edit_graph(edit=None, width=256, height=256))
    before = captured["out"]
    comfy.run_graph(blend_graph())
    comfy.run_graph(edit_graph(edit=None, width=256, height=256))
    assert torch.equal(captured["out"], before)


@pytest.mark.slow
@pytest.mark.parametrize("width, height", [(256, 256), (256, 192)])
def test_real_sd15_shapes(comfy, captured, width, height):
    from devtools.checkpoints import checkpoint

    loader = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint("sd15")}}
    outputs = comfy.run_graph(blend_graph("sd15_real", width, height, loader=loader, steps=2))
    check_blend(outputs, captured["out"])
