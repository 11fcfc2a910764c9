"""The edit nodes on Flux (the joint-attention family) in the real host: a tiny Flux.1 of ComfyUI's own
classes and config, a tiny T5 encoder on the real T5 tokenizer; identity, fused == reference, no leak, errors."""

import pytest
import torch

from devtools import harness as comfy_harness
from devtools.graphs import edit_graph

SOURCE = "a red cat riding a bicycle"
WINDOWS = {"cross_replace": 0.8, "self_replace": 0.4}
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "heun"]


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_flux_prompts_are_t5_words_padded_to_one_length(comfy):
    clip = comfy.tiny_model("flux")[1]
    encode_prompts = comfy.pack("host.prompts").encode_prompts
    long_target = " ".join(["red"] * 300)
    conditioning, prompts = encode_prompts(clip, "a red cat, riding unbelievably", ["a blue dog", long_target])
    source = prompts.source
    assert source.words == ("a", "red", "cat,", "riding", "unbelievably")
    assert len(source.find_phrase("unbelievably")) == 4  # four T5 pieces, one word
    assert source.find_phrase("cat") == [3, 4]  # "▁cat" and ","
    lengths = {p.length for p in prompts.all}
    assert lengths == {conditioning[0][0].shape[1]} and lengths.pop() > 300
    assert conditioning[0][0].shape[0] == 3 and conditioning[0][1]["pooled_output"].shape[0] == 3


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_identity_edit_on_flux_reproduces_the_source_bit_for_bit(captured, sampler):
    comfy_harness.run_graph(edit_graph(family="flux", source=SOURCE, target=SOURCE, sampler=sampler, steps=3))
    out = captured["out"]
    assert out.shape == (2, 16, 8, 8) and torch.isfinite(out).all()
    assert torch.equal(out[0], out[1])


def test_identity_edit_on_flux_schnell_with_every_block(captured):
    settings = dict(family="flux_schnell", source=SOURCE, target=SOURCE, cfg=1.0, steps=2)
    comfy_harness.run_graph(edit_graph(**settings, edit_inputs={"self_layers": "all"}))
    assert torch.equal(captured["out"][0], captured["out"][1])


EDITS = {
    "replace": dict(target="a blue dog riding a bicycle"),
    "reweight": dict(edit=None, target=SOURCE, chain=[("Reweight", {"weights": "red=3, cat=-1"})]),
    "replace+reweight": dict(target="a red dog riding a bicycle", chain=[("Reweight", {"weights": "dog=2.5"})]),
}


def unedited(prompt: str, **settings) -> torch.Tensor:
    """`prompt` sampled alone by the plain model, from the noise an edit gives every row (batch 1, seed row 0)."""
    comfy_harness.run_graph(
        edit_graph(**{**settings, "source": prompt, "target": prompt, "edit": None, "chain": []}, capture="alone")
    )
    return comfy_harness.captured_latents()["alone"][0]


@pytest.mark.parametrize("name", list(EDITS))
def test_flux_edit_equals_the_explicit_reference_and_changes_the_target(captured, name):
    settings = dict(family="flux", sampler="dpmpp_2m", steps=3, edit_inputs={"self_layers": "all"}, **EDITS[name])
    settings.setdefault("edit", "AttentionReplace")
    settings["chain"] = [(node, {**WINDOWS, **inputs}) for node, inputs in settings.get("chain", [])]
    comfy_harness.run_graph(edit_graph(**settings, capture="fused"))
    comfy_harness.run_graph(edit_graph(**settings, capture="reference", reference=True))
    comfy_harness.run_graph(edit_graph(**{**settings, "edit": None, "chain": []}, batch=2, capture="plain"))
    fused, reference = captured["fused"], captured["reference"]
    assert relative(fused, reference) < 1e-4
    assert torch.equal(fused[0], captured["plain"][0])  # the source row samples as it would unedited
    # The edit acts: the target is not what its own prompt gives from the same noise.
    assert relative(fused[1], unedited(settings["target"], **settings)) > 1e-2


def test_flux_injection_acts_in_its_window_and_blocks(captured):
    """The q/k injection acts only inside cross_replace, and in the blocks self_layers names."""
    target = "a blue dog riding a bicycle"
    settings = dict(family="flux", target=target, steps=3)
    comfy_harness.run_graph(edit_graph(**settings, capture="double"))
    comfy_harness.run_graph(edit_graph(**settings, edit_inputs={"self_layers": "all"}, capture="all"))
    comfy_harness.run_graph(edit_graph(**settings, edit_inputs={"cross_replace": 0.0}, capture="none"))
    double, every, none = captured["double"], captured["all"], captured["none"]
    alone = unedited(target, **settings)
    assert relative(double[1], every[1]) > 1e-3
    assert relative(double[1], alone) > 1e-2
    # Outside the window the target is its own prompt's sample, up to the batch position's rounding.
    assert relative(none[1], alone) < 1e-5


def test_plain_flux_samples_bit_identically_after_a_p2p_run(captured):
    plain = dict(family="flux", edit=None, batch=2, steps=3)
    comfy_harness.run_graph(edit_graph(**plain, capture="before"))
    comfy_harness.run_graph(edit_graph(family="flux", target="a blue dog riding a bicycle", steps=3))
    comfy_harness.run_graph(edit_graph(**plain, capture="after"))
    assert torch.equal(captured["before"], captured["after"])


def test_flux_bad_inputs_are_named_and_the_next_prompt_runs(comfy, captured):
    unknown = edit_graph(family="flux", target=SOURCE, chain=[("Reweight", {"weights": "zebra=2", **WINDOWS})], steps=2)
    with pytest.raises(comfy.GraphError, match="weights: the word 'zebra' is not in.*its words: a red cat riding a"):
        comfy.run_graph(unknown)
    with pytest.raises(comfy.GraphError, match="target prompt is empty"):
        comfy.run_graph(edit_graph(family="flux", target="  \n ", steps=2))
    scheduled = edit_graph(family="flux", edit_inputs={"word_schedule": "car=0.3"}, steps=2)
    with pytest.raises(comfy.GraphError, match="word_schedule: per-word windows do not apply"):
        comfy.run_graph(scheduled)
    blend = {"source_words": "bicycle", "target_words": "car", "threshold": 0.5}
    with pytest.raises(comfy.GraphError, match=r"LocalBlend.*do not support joint-attention models \(Flux"):
        comfy.run_graph(edit_graph(family="flux", chain=[("LocalBlend", blend)], steps=2))
    other = edit_graph(family="flux", steps=2)
    other["other"] = {"class_type": "P2PTestTinyModel", "inputs": {"family": "hunyuan_dit", "seed": 0}}
    other["edit"]["inputs"]["model"] = ["other", 0]
    with pytest.raises(comfy.GraphError, match=r"HunyuanDiT \(HunYuanDiT\) model has no .*attention"):
        comfy.run_graph(other)
    comfy.run_graph(edit_graph(family="flux", source=SOURCE, target=SOURCE, steps=2))
    assert torch.equal(captured["out"][0], captured["out"][1])


def test_another_packs_attention_override_is_composed_with_on_flux(comfy, captured):
    calls = comfy.loaded_module(comfy.FIXTURE_NODES, "other_packs").CALLS
    graph = edit_graph(family="flux", source=SOURCE, target=SOURCE, steps=2)
    graph["other"] = {"class_type": "P2PTestOtherAttentionOverride", "inputs": {"model": ["model", 0], "sharpen": 1.5}}
    graph["edit"]["inputs"]["model"] = ["other", 0]
    graph["chain0"] = {
        "class_type": "Reweight",
        "inputs": {"model": ["edit", 0], "prompts": ["pair", 1], "weights": "red=1", **WINDOWS},
    }
    graph["sample"]["inputs"]["model"] = ["chain0", 0]
    calls.clear()
    comfy.run_graph(graph)
    # Wrapped once: every attention call of the run (2 steps, 4 blocks) reaches the other pack's override once.
    assert calls["override"] == 2 * 4
    with_other = captured["out"]
    assert torch.equal(with_other[0], with_other[1])
    comfy.run_graph(edit_graph(family="flux", source=SOURCE, target=SOURCE, steps=2))
    assert relative(captured["out"][0], with_other[0]) > 1e-3


def test_a_flux_edit_that_never_reaches_the_joint_attention_fails_the_prompt(comfy, captured):
    graph = edit_graph(family="flux", target="a blue dog riding a bicycle", steps=2)
    graph["bypass"] = {"class_type": "P2PTestDropAttentionPatches", "inputs": {"model": ["edit", 0], "kinds": "joint"}}
    graph["sample"]["inputs"]["model"] = ["bypass", 0]
    with pytest.raises(comfy.GraphError, match=r"never reached the model's joint attention.*unedited"):
        comfy.run_graph(graph)
    assert "out" not in captured
