"""LocalBlend, AttentionMapRecorder and AttentionMaskExtract on the joint-attention families in the real host
(test_dit.py's tiny Flux.1, SD3, SD3.5 medium, Qwen-Image, Chroma and Z-Image of ComfyUI's own classes, real
tokenizers): the image->text maps of the chosen blocks, fused == explicit reference (Z-Image: its padded context
and image tokens; Flux and Qwen-Image with a reference latent: its tokens after the image's); the blend keeps the
source outside its mask; masks at the image's size that follow the word; a plain model's heat maps; named errors."""

import pytest
import torch
from test_dit import SOURCE, relative
from test_local_blend import blend_graph, check_blend

from devtools.graphs import add_mask_extract, edit_graph, read_pngs

FAMILIES = ["flux", "sd3"]
MAP_FAMILIES = [*FAMILIES, "qwen_image", "chroma", "z_image"]
"""The families whose maps, blend and masks are tested (the bad inputs on the first two)."""
TARGET = "a red cat riding a car"
THRESHOLD = {"flux": 0.97, "sd3": 0.9, "qwen_image": 0.9, "chroma": 0.97, "z_image": 0.9}
"""Near the median of the tiny models' normalised word maps at 128 px (random weights: Flux's are flat), so that
masks are partial."""


def recorded_maps(comfy, family: str, reference: bool, reference_latent: torch.Tensor | None = None) -> torch.Tensor:
    """The maps [R, L, h, w] an AttentionMapRecorder on the plain tiny `family` model filed after 3 euler steps
    (64 x 64 px: a latent of 8 x 8, image tokens 4 x 4); `reference`: computed by explicit softmax;
    `reference_latent`: a reference image's latent on both conds, by ComfyUI's ReferenceLatent node (Flux
    Kontext, Qwen-Image-Edit: its tokens follow the image's)."""
    from comfy_extras.nodes_edit_model import ReferenceLatent

    import nodes

    model, clip, _ = comfy.tiny_model(family)
    cond, prompts = comfy.pack("host.prompts").encode_prompts(clip, SOURCE, [TARGET])
    negative = nodes.CLIPTextEncode().encode(clip, "")[0]
    if reference_latent is not None:
        cond, negative = (ReferenceLatent.execute(c, {"samples": reference_latent}).args[0] for c in (cond, negative))
    recorder = comfy.pack("p2p_core.maps").MapRecorder(prompts, 4)
    patched = comfy.pack("host.recording").attach_recorder(model, prompts, recorder)
    if reference:
        patched = comfy.pack("host.edit").with_reference_attention(patched)
    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    nodes.common_ksampler(patched, 3, 3, 5.0, "euler", "normal", cond, negative, latent)
    (record,) = recorder.records
    return record.maps


@pytest.mark.parametrize("family", [*MAP_FAMILIES, "sd35_medium"])
def test_joint_word_maps_equal_the_explicit_softmax_reference(comfy, family):
    fused, reference = recorded_maps(comfy, family, False), recorded_maps(comfy, family, True)
    assert fused.shape[-2:] == (4, 4)  # the image token grid: latent / 2 per side
    assert relative(fused, reference) < 1e-4
    assert fused.std() > 0


@pytest.mark.parametrize("family", MAP_FAMILIES)
def test_local_blend_on_joint_models_keeps_the_source_outside_the_mask(comfy, captured, family):
    graph = blend_graph(family=family, width=128, height=128, steps=3, blend={"threshold": THRESHOLD[family]})
    outputs = comfy.run_graph(graph, keep_outputs=True)
    check_blend(outputs, captured["out"])


def mask_graph(family: str, words: str) -> dict:
    """A plain model (no edit) with an AttentionMapRecorder, then the masks and heat maps of `words`."""
    graph = edit_graph(family=family, target=TARGET, edit=None, chain=[("AttentionMapRecorder", {})], steps=3)
    add_mask_extract(graph, ["chain0", 0], words, THRESHOLD[family])
    graph["heat_preview"] = {"class_type": "PreviewImage", "inputs": {"images": ["extract", 1]}}
    return graph


@pytest.mark.parametrize("family", MAP_FAMILIES)
def test_joint_masks_and_heat_maps_of_a_plain_model_follow_the_word(comfy, family):
    found = {}
    for words in ("cat", "bicycle, car"):
        outputs = comfy.run_graph(mask_graph(family, words), keep_outputs=True)
        found[words] = read_pngs(outputs["mask_preview"]["images"])[..., 0] > 127
        heat = read_pngs(outputs["heat_preview"]["images"]).float()
        assert heat.std() > 0
    cat, vehicle = found["cat"], found["bicycle, car"]
    assert cat.shape == vehicle.shape == (2, 64, 64)  # the image's size (upscale 8)
    assert 0 < cat.float().mean() < 1
    assert not torch.equal(cat, vehicle)


@pytest.mark.parametrize("family", FAMILIES)
def test_joint_map_nodes_name_bad_inputs_and_the_next_prompt_runs(comfy, captured, family):
    """Unknown words and an unsupported family are named errors; the next prompt runs."""
    blend = {"source_words": "zebra", "target_words": "car", "threshold": 0.5}
    with pytest.raises(comfy.GraphError, match="source_words: the word 'zebra' is not in.*its words: a red cat"):
        comfy.run_graph(edit_graph(family=family, target=TARGET, chain=[("LocalBlend", blend)], steps=2))
    with pytest.raises(comfy.GraphError, match="words: the word 'zebra' is not in"):
        comfy.run_graph(mask_graph(family, "cat, zebra"))
    other = mask_graph(family, "cat")
    other["other"] = {"class_type": "P2PTestTinyModel", "inputs": {"family": "hunyuan_dit", "seed": 0}}
    other["chain0"]["inputs"]["model"] = ["other", 0]
    with pytest.raises(comfy.GraphError, match=r"HunyuanDiT \(HunYuanDiT\) model has no .*attention"):
        comfy.run_graph(other)
    blend.update(source_words="bicycle", target_words="bicycle")
    comfy.run_graph(edit_graph(family=family, source=SOURCE, target=SOURCE, chain=[("LocalBlend", blend)], steps=2))
    assert torch.equal(captured["out"][0], captured["out"][1])


@pytest.mark.parametrize("family", ["flux", "qwen_image"])
def test_joint_word_maps_of_an_edit_models_graph_read_the_image_not_the_reference(comfy, family):
    """With a reference latent (Flux Kontext, Qwen-Image-Edit: ReferenceLatent), the reference image's tokens
    follow the image's in every joint call: the maps are the image grid's, the reference's tokens among the keys
    of the softmax, fused == reference; and they are not the maps of the same graph without a reference."""
    latent = torch.randn(1, 16, 6, 10, generator=torch.Generator().manual_seed(0))  # 3 x 5 reference tokens
    if family == "qwen_image":
        latent = latent[:, :, None]  # [B, C, T, H, W]
    fused = recorded_maps(comfy, family, False, latent)
    assert fused.shape[-2:] == (4, 4)
    assert relative(fused, recorded_maps(comfy, family, True, latent)) < 1e-4
    assert relative(fused, recorded_maps(comfy, family, False)) > 1e-3
