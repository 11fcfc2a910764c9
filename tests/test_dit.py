"""The edit nodes on the joint-attention families in the real host: a tiny Flux.1 and a tiny SD3 / SD3.5 medium
(MMDiT, MMDiT-X) of ComfyUI's own classes and configs, tiny T5 and CLIP-L/G encoders on the real tokenizers;
identity, fused == reference, the edit acts, no leak, errors, composition with other packs; and (slow) a word swap
on SD3 medium's 2B checkpoint and on Flux.1 at its real widths through the stock loaders (devtools.checkpoints)."""

import pytest
import torch

from devtools import harness as comfy_harness
from devtools.graphs import edit_graph

SOURCE = "a red cat riding a bicycle"
WINDOWS = {"cross_replace": 0.8, "self_replace": 0.4}
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "heun"]
JOINT = ["flux", "sd3", "sd35_medium"]
"""The tiny joint-attention models: Flux.1 dev, SD3 (MMDiT), SD3.5 medium (MMDiT-X)."""
IDENTITY_SAMPLERS = {
    **{family: SAMPLERS for family in JOINT},
    "qwen_image": SAMPLERS,
    "z_image": ["euler", "dpmpp_2m_sde"],
    "chroma": ["euler"],
    "flux2": ["euler"],
}
"""The samplers each family's identity edit runs on (tests/test_dit_families.py: the other families): all five for
the most used ones, fewer for the others (CI time; Chroma and Flux.2 run Flux's family object)."""
NEW_FAMILIES = ["qwen_image", "z_image", "chroma", "flux2"]
"""The families beside Flux.1 and SD3 (tests/test_dit_families.py: their word positions): Qwen-Image, Z-Image
(NextDiT), Chroma (Flux's blocks, T5 alone), Flux.2 (Flux's class, its flux2 blocks; Flux.1's T5 standing in)."""
PLAIN_AFTER_A_RUN = ["flux", "sd3", "qwen_image", "z_image", "chroma"]
"""The families whose injection's blocks and window, and whose plain model after a P2P run, are checked: each
family object once (Flux.2 runs Flux's; its tiny model hardly hears the prompt)."""


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


@pytest.mark.parametrize(
    ("family", "sampler"), [(family, sampler) for family, samplers in IDENTITY_SAMPLERS.items() for sampler in samplers]
)
def test_identity_edit_on_joint_models_reproduces_the_source_bit_for_bit(captured, family, sampler):
    comfy_harness.run_graph(edit_graph(family=family, source=SOURCE, target=SOURCE, sampler=sampler, steps=3))
    out = captured["out"]
    assert out.shape[0] == 2 and torch.isfinite(out).all()
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


EDIT_CASES = {
    **{family: list(EDITS) for family in [*JOINT, "qwen_image"]},
    "z_image": ["reweight", "replace+reweight"],
    "chroma": ["replace+reweight"],
    "flux2": ["replace+reweight"],
}
"""The edits each family's fused == reference test runs: all three on the most used ones, fewer on the others."""


@pytest.mark.parametrize(("family", "name"), [(family, name) for family, names in EDIT_CASES.items() for name in names])
def test_joint_edit_equals_the_explicit_reference_and_changes_the_target(captured, family, name):
    settings = dict(family=family, sampler="dpmpp_2m", steps=3, edit_inputs={"self_layers": "all"}, **EDITS[name])
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


@pytest.mark.parametrize("family", PLAIN_AFTER_A_RUN)
def test_joint_injection_acts_in_its_window_and_blocks(captured, family):
    """The q/k injection acts only inside cross_replace, and in the blocks self_layers names (coarse, the
    default: Flux's and Chroma's double blocks; SD3's, Qwen-Image's and Z-Image's first third, 1 block of 3)."""
    target = "a blue dog riding a bicycle"
    settings = dict(family=family, target=target, steps=3)
    comfy_harness.run_graph(edit_graph(**settings, capture="coarse"))
    comfy_harness.run_graph(edit_graph(**settings, edit_inputs={"self_layers": "all"}, capture="all"))
    comfy_harness.run_graph(edit_graph(**settings, edit_inputs={"cross_replace": 0.0}, capture="none"))
    coarse, every, none = captured["coarse"], captured["all"], captured["none"]
    alone = unedited(target, **settings)
    assert relative(coarse[1], every[1]) > 1e-3
    assert relative(coarse[1], alone) > 1e-2
    # Outside the window the target is its own prompt's sample, up to the batch position's rounding.
    assert relative(none[1], alone) < 1e-5


def test_text_sources_follow_comfyuis_repeated_contexts_and_the_models_padding(comfy):
    joint = comfy.pack("host.joint")
    # A 2-token source against a 4-token target (ComfyUI repeats the source to 4): target token 1 spreads
    # over source tokens 0-1 (its first), token 2 is new (not injected), token 3 a special the mapper leaves out.
    mapper = torch.tensor([[1.0, 0.5, 0, 0], [0, 0.5, 0, 0]])
    sources = joint.text_sources(mapper, torch.tensor([1.0, 1, 0, 1]))
    assert sources.tolist() == [0, 0, -1, 3]  # token 3 reads the source's copy at the same position
    # A 4-token source against a 2-token target repeated to 4: each copy reads the source's own tokens.
    assert joint.text_sources(torch.eye(4)[:, [1, 3]], torch.ones(2)).tolist() == [1, 3, 1, 3]
    plan = joint.JointPlan(1, frozenset(), joint.Window(0, 1), text_sources=torch.tensor([[-1, 0]]))
    # Tiled to a context of 4 (two copies of the prompts' 2) and a call of 6 (the model's padding: the same).
    assert joint.tiled(plan, 6, 4).text_sources.tolist() == [[-1, 0, -1, 2, 4, 5]]
    with pytest.raises(ValueError, match="not a multiple of the prompts' 2"):
        joint.tiled(plan, 5, 5)


@pytest.mark.parametrize(("family", "edit"), [("flux", "AttentionRefine"), ("sd3", "AttentionReplace")])
def test_the_targets_image_queries_read_the_source_text_keys_through_the_mapper(comfy, captured, monkeypatch,
                                                                                 family, edit):
    """Every injected call hands the core each target text token's source token: the swapped or aligned word's
    source positions (Flux's T5; SD3's CLIP and T5 parts), -1 for a word only the target has."""
    joint = comfy.pack("host.joint")
    fused = joint.fused_joint_attention
    seen: list[torch.Tensor] = []

    def spy(q, k, v, attend, rows, tokens, terms):
        seen.append(terms.text_keys)
        return fused(q, k, v, attend, rows, tokens, terms)

    monkeypatch.setattr(joint, "fused_joint_attention", spy)
    target = "a red cat riding a rusty bicycle" if edit == "AttentionRefine" else "a red dog riding a bicycle"
    comfy_harness.run_graph(edit_graph(family=family, target=target, edit=edit, steps=2))
    _, prompts = comfy.pack("host.prompts").encode_prompts(comfy.tiny_model(family)[1], SOURCE, [target])
    source, changed = prompts.source, prompts.all[1]
    words = [("red", "red"), ("riding", "riding"), ("bicycle", "bicycle")]
    words.append(("cat", "cat") if edit == "AttentionRefine" else ("cat", "dog"))
    assert seen and all(keys is not None for keys in seen)
    for keys in seen:
        for old, new in words:
            assert keys[0, changed.find_phrase(new)].tolist() == source.find_phrase(old), (old, new)
        if edit == "AttentionRefine":
            assert set(keys[0, changed.find_phrase("rusty")].tolist()) == {-1}
        else:
            assert -1 not in keys[0].tolist()


@pytest.mark.parametrize("family", PLAIN_AFTER_A_RUN)
def test_plain_joint_model_samples_bit_identically_after_a_p2p_run(captured, family):
    plain = dict(family=family, edit=None, batch=2, steps=3)
    comfy_harness.run_graph(edit_graph(**plain, capture="before"))
    comfy_harness.run_graph(edit_graph(family=family, target="a blue dog riding a bicycle", steps=3))
    comfy_harness.run_graph(edit_graph(**plain, capture="after"))
    assert torch.equal(captured["before"], captured["after"])


@pytest.mark.parametrize("family", ["flux", "sd3", *NEW_FAMILIES])
def test_joint_bad_inputs_are_named_and_the_next_prompt_runs(comfy, captured, family):
    unknown = edit_graph(family=family, target=SOURCE, chain=[("Reweight", {"weights": "zebra=2", **WINDOWS})], steps=2)
    with pytest.raises(comfy.GraphError, match="weights: the word 'zebra' is not in.*its words: a red cat riding a"):
        comfy.run_graph(unknown)
    with pytest.raises(comfy.GraphError, match="target prompt is empty"):
        comfy.run_graph(edit_graph(family=family, target="  \n ", steps=2))
    scheduled = edit_graph(family=family, edit_inputs={"word_schedule": "car=0.3"}, steps=2)
    with pytest.raises(comfy.GraphError, match="word_schedule: per-word windows do not apply"):
        comfy.run_graph(scheduled)
    other = edit_graph(family=family, steps=2)
    other["other"] = {"class_type": "P2PTestTinyModel", "inputs": {"family": "hunyuan_dit", "seed": 0}}
    other["edit"]["inputs"]["model"] = ["other", 0]
    with pytest.raises(comfy.GraphError, match=r"HunyuanDiT \(HunYuanDiT\) model has no .*attention"):
        comfy.run_graph(other)
    comfy.run_graph(edit_graph(family=family, source=SOURCE, target=SOURCE, steps=2))
    assert torch.equal(captured["out"][0], captured["out"][1])


CALLS_PER_STEP = {"flux": 4, "sd3": 3, "sd35_medium": 3 + 2, "qwen_image": 2 * 3, "z_image": 2 * (2 + 2 + 3),
                  "chroma": 2 * (2 + 2), "flux2": 2 + 2}
"""The attention calls of one sampling step: Flux's 2 double and 2 single blocks; SD3's 3 joint blocks; SD3.5
medium's and the image-only calls of its 2 MMDiT-X blocks (one model call: prompts and negative batch together);
in two model calls (the prompts' and the empty negative's contexts differ in length, so ComfyUI does not batch
them): Qwen-Image's 3 joint blocks, Z-Image's 2 context refiner (text alone), 2 noise refiner (image alone) and 3
joint layers, Chroma's 2 double and 2 single blocks; Flux.2's 2 double and 2 single blocks in one model call (its
T5 context, at least 256 tokens, batches with the negative)."""


@pytest.mark.parametrize("family", list(CALLS_PER_STEP))
def test_another_packs_attention_override_is_composed_with(comfy, captured, monkeypatch, family):
    calls = comfy.loaded_module(comfy.FIXTURE_NODES, "other_packs").CALLS
    joint = comfy.pack("host.joint")
    fused, split = joint.fused_joint_attention, []

    def spy(q, k, v, attend, rows, tokens, terms):
        split.append(terms.text_keys is not None or terms.text_scale is not None)
        return fused(q, k, v, attend, rows, tokens, terms)

    monkeypatch.setattr(joint, "fused_joint_attention", spy)
    graph = edit_graph(family=family, source=SOURCE, target=SOURCE, steps=2)
    graph["other"] = {"class_type": "P2PTestOtherAttentionOverride", "inputs": {"model": ["model", 0], "sharpen": 1.5}}
    graph["edit"]["inputs"]["model"] = ["other", 0]
    graph["chain0"] = {
        "class_type": "Reweight",
        "inputs": {"model": ["edit", 0], "prompts": ["pair", 1], "weights": "red=1", **WINDOWS},
    }
    graph["sample"]["inputs"]["model"] = ["chain0", 0]
    calls.clear()
    comfy.run_graph(graph)
    # Wrapped once: every attention call of the run (2 steps) reaches the other pack's override once, an edited
    # call with the source's text keys twice (its text queries, then its image queries: two kernel calls).
    assert any(split)
    assert calls["override"] == 2 * CALLS_PER_STEP[family] + sum(split)
    with_other = captured["out"]
    assert torch.equal(with_other[0], with_other[1])
    comfy.run_graph(edit_graph(family=family, source=SOURCE, target=SOURCE, steps=2))
    assert relative(captured["out"][0], with_other[0]) > 1e-3


@pytest.mark.parametrize("family", ["flux", "sd3", *NEW_FAMILIES])
def test_a_joint_edit_that_never_reaches_the_joint_attention_fails_the_prompt(comfy, captured, family):
    graph = edit_graph(family=family, target="a blue dog riding a bicycle", steps=2)
    graph["bypass"] = {"class_type": "P2PTestDropAttentionPatches", "inputs": {"model": ["edit", 0], "kinds": "joint"}}
    graph["sample"]["inputs"]["model"] = ["bypass", 0]
    with pytest.raises(comfy.GraphError, match=r"never reached the model's joint attention.*unedited"):
        comfy.run_graph(graph)
    assert "out" not in captured


@pytest.mark.parametrize(("family", "t5"), [("sd3", True), ("sd3_no_t5", False)])
def test_sd3_prompts_place_each_word_in_the_clip_and_the_t5_part(comfy, family, t5):
    """SD3's context is the CLIP-L/G part (77 tokens a chunk) followed by the T5 part: a word has positions in
    both (CLIP's `cat,` is `cat` and `,`, T5's `▁cat` and `,`; `unbelievably` is one CLIP token, four T5 ones)."""
    clip = comfy.tiny_model(family)[1]
    encode_prompts = comfy.pack("host.prompts").encode_prompts
    conditioning, prompts = encode_prompts(clip, "a red cat, riding unbelievably", ["a blue dog riding fast"])
    source = prompts.source
    assert source.words == ("a", "red", "cat", ",", "riding", "unbelievably")
    assert source.length == conditioning[0][0].shape[1] == (77 + 77 if t5 else 77)
    for word in ("red", "cat", "unbelievably"):
        clip_part = [p for p in source.find_phrase(word) if p < 77]
        t5_part = [p for p in source.find_phrase(word) if p >= 77]
        assert len(clip_part) == 1 and len(t5_part) == (0 if not t5 else 4 if word == "unbelievably" else 1)
    if t5:
        assert [p >= 77 for p in source.word_positions(3)] == [False, True]  # T5's "," is CLIP's word ","
    long_target = " ".join(["red"] * 80)  # two CLIP chunks against the source's one
    with pytest.raises(comfy.pack("host.errors").UserError, match=r"as many 77-token CLIP chunks.*'a red cat': 1"):
        encode_prompts(clip, "a red cat", [long_target])


def test_sd3_reweight_scales_a_words_clip_and_t5_positions(comfy):
    clip = comfy.tiny_model("sd3")[1]
    prompts = comfy.pack("host.prompts").encode_prompts(clip, SOURCE, ["a red dog riding a bicycle"])[1]
    plans = comfy.pack("p2p_core.plans")
    plan = plans.reweighted_plan(plans.replace_plan(prompts, 0.8, 0.4), prompts, "dog=2.5")
    weight = plan.targets[0].weight
    dog = prompts.targets[0].find_phrase("dog")
    assert [p >= 77 for p in dog] == [False, True]
    assert weight[dog].tolist() == [2.5, 2.5]
    assert bool((weight[[p for p in range(len(weight)) if p not in dog]] == 1).all())


def test_mmdit_x_image_only_attention_is_not_taken_for_a_joint_call(comfy, captured):
    """SD3.5 medium's MMDiT-X blocks make a second, image-only attention call: at 256 px it has 256 tokens,
    more than the 154 text tokens, and must reach the kernel whole (not split as text + image)."""
    calls = comfy.loaded_module(comfy.FIXTURE_NODES, "other_packs").CALLS
    graph = edit_graph(family="sd35_medium", steps=2, width=256, height=256, edit_inputs={"self_layers": "all"})
    graph["other"] = {"class_type": "P2PTestOtherAttentionOverride", "inputs": {"model": ["model", 0], "sharpen": 1.0}}
    graph["edit"]["inputs"]["model"] = ["other", 0]
    graph["chain0"] = {
        "class_type": "Reweight",
        "inputs": {"model": ["edit", 0], "prompts": ["pair", 1], "weights": "car=2", **WINDOWS},
    }
    graph["sample"]["inputs"]["model"] = ["chain0", 0]
    calls.clear()
    comfy.run_graph(graph)
    image, joint = 256, 154 + 256
    shapes = {key[1:]: n for key, n in calls.items() if isinstance(key, tuple)}
    # Step 0 re-weights (its joint calls: text and image queries apart, against every key), step 1 is past the
    # window (whole joint calls); the image-only calls of the 2 MMDiT-X blocks whole in both steps.
    assert shapes == {(154, joint): 3, (image, joint): 3, (joint, joint): 3, (image, image): 2 * 2}


def test_another_packs_dit_replace_is_wrapped_on_sd3(comfy, captured):
    calls = comfy.loaded_module(comfy.FIXTURE_NODES, "other_packs").CALLS
    settings = dict(family="sd3", target="a blue dog riding a bicycle", steps=2, edit_inputs={"self_layers": "all"})
    graph = edit_graph(**settings)
    graph["other"] = {"class_type": "P2PTestOtherDitReplace", "inputs": {"model": ["model", 0], "shift": 0.5}}
    graph["edit"]["inputs"]["model"] = ["other", 0]
    calls.clear()
    comfy.run_graph(graph)
    assert calls["dit"] == 2 * 3  # 2 steps, 3 joint blocks: the other pack's replace ran in every block
    with_other = captured["out"].clone()
    comfy.run_graph(edit_graph(**settings))
    assert relative(with_other[0], captured["out"][0]) > 1e-3
    # The edit still acts through the other pack's replace: the target is not its own prompt's sample.
    plain = edit_graph(**{**settings, "source": settings["target"], "edit": None}, capture="alone")
    plain["other"] = {"class_type": "P2PTestOtherDitReplace", "inputs": {"model": ["model", 0], "shift": 0.5}}
    plain["sample"]["inputs"]["model"] = ["other", 0]
    comfy.run_graph(plain)
    assert relative(with_other[1], captured["alone"][0]) > 1e-2


def real_shape_graph(family: str, **settings) -> dict:
    """edit_graph on a real-shape file through its stock loader (devtools.checkpoints): SD3 medium's checkpoint
    through CheckpointLoaderSimple (its CLIP-L/G inside), or the real-width Flux.1 through UNETLoader with the
    fixture's text encoders (harness.flux_text_encoders: real CLIP-L, a 4096-wide T5 of one layer)."""
    from devtools.checkpoints import checkpoint

    if family == "sd3_medium":
        return edit_graph(
            loader={"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint(family)}}, **settings
        )
    unet = {"class_type": "UNETLoader", "inputs": {"unet_name": checkpoint(family), "weight_dtype": "default"}}
    graph = edit_graph(loader=unet, **settings)
    graph["text"] = {"class_type": "P2PTestFluxTextEncoders", "inputs": {"seed": 0}}
    for node in graph.values():
        if node["inputs"].get("clip") == ["model", 1]:
            node["inputs"]["clip"] = ["text", 0]
    return graph


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd3_medium", "flux_widths"])
def test_word_swap_on_the_real_shapes_through_the_stock_loaders(captured, family):
    """AttentionReplace on SD3 medium's 2B MMDiT and on Flux.1 at its real widths, cfg 1, 2 steps, 64 px: the identity
    edit gives the source bit for bit, the source row is the same in either run, and the word swap moves the target
    away from its own prompt sampled unedited by more than 1 % of its scale, as on the tiny models above (measured
    2.5 % on both; the prompts themselves move it 13 %). In every block (`self_layers` all): with the default
    (the first third of SD3's blocks, Flux's double block) these random weights moved it 1.5 %, too near 1 %."""
    settings = dict(source=SOURCE, target="a blue dog riding a bicycle", steps=2, cfg=1.0, sampler="euler")
    settings["edit_inputs"] = {"self_layers": "all"}
    for capture, inputs in [
        ("edit", {}),
        ("identity", {"target": SOURCE}),
        ("alone", {"source": settings["target"], "edit": None}),
    ]:
        comfy_harness.run_graph(real_shape_graph(family, **{**settings, **inputs}, capture=capture), keep_outputs=True)
    edit, identity, alone = captured["edit"], captured["identity"], captured["alone"][0]
    assert edit.shape == identity.shape == (2, 16, 8, 8) and torch.isfinite(edit).all()
    assert torch.equal(identity[0], identity[1])
    assert torch.equal(edit[0], identity[0])
    assert relative(edit[1], alone) > 1e-2
    comfy_harness.free_models()
