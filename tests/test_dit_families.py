"""The edit nodes on the joint-attention families added beside Flux and SD3: a tiny Qwen-Image, a tiny Z-Image
(NextDiT), a tiny Chroma and a tiny Flux.2 of ComfyUI's own classes and configs, with tiny Qwen2.5-VL / Qwen3 text
encoders on the real Qwen tokenizer (T5 on its own for Chroma; Flux.1's T5 standing in for Flux.2's Mistral, whose
tokenizer is not shipped with ComfyUI); the word positions of the chat-template contexts, errors, composition. Their
identity, fused == reference, injection and plain-model-after-a-run cases are test_dit.py's tests, parametrized over
these families too."""

import pytest
import torch
from test_dit import SOURCE, WINDOWS, relative

from devtools import harness as comfy_harness
from devtools.graphs import edit_graph

FAMILIES = ["qwen_image", "z_image", "chroma", "flux2"]
"""The tiny models of the families tested here: Qwen-Image (Qwen2.5-VL 7B's layout as text encoder), Z-Image
(NextDiT, Qwen3 4B's layout), Chroma (Flux's blocks, T5), Flux.2 (Flux's class, its flux2 blocks)."""
CALLS_PER_STEP = {"qwen_image": 2 * 3, "z_image": 2 * (2 + 2 + 3), "chroma": 2 * (2 + 2), "flux2": 2 + 2}
"""The attention calls of one sampling step, in two model calls (the prompts' and the empty negative's contexts
differ in length, so ComfyUI does not batch them): Qwen-Image's 3 joint blocks; Z-Image's 2 context refiner
(text alone), 2 noise refiner (image alone) and 3 joint layers; Chroma's 2 double and 2 single blocks; Flux.2's
2 double and 2 single blocks in one model call (its T5 context, at least 256 tokens, batches with the negative)."""


def test_qwen_image_prompts_are_the_words_after_the_chat_template_and_padded_to_one_length(comfy):
    """ComfyUI's Qwen-Image encoder drops the template's system turn and `<|im_start|>user\\n`: the context
    starts at the prompt's first token and keeps the template's end (5 tokens); words from the BPE's word-start
    marks (`cat,` one word of `cat` and `,`; `unbelievably` two tokens), prompts padded to the longest."""
    clip = comfy.tiny_model("qwen_image")[1]
    encode_prompts = comfy.pack("host.prompts").encode_prompts
    conditioning, prompts = encode_prompts(clip, "a red cat, riding unbelievably", ["a blue dog", "a red cat"])
    source = prompts.source
    assert source.words == ("a", "red", "cat,", "riding", "unbelievably")
    assert source.find_phrase("cat") == [2, 3] and len(source.find_phrase("unbelievably")) == 2
    assert source.token_words[-5:] == (-1,) * 5  # <|im_end|> \n <|im_start|> assistant \n
    assert source.length == 7 + 5
    assert {p.length for p in prompts.all} == {conditioning[0][0].shape[1]}
    assert prompts.targets[0].words == ("a", "blue", "dog")
    assert prompts.targets[0].token_words == (0, 1, 2) + (-1,) * (5 + 4)  # the template's end, then 4 pads
    assert "attention_mask" not in conditioning[0][1]
    with pytest.raises(ValueError, match=r"'zebra' is not in the prompt 'a blue dog' \(its words: a blue dog\)"):
        prompts.targets[0].find_phrase("zebra")


@pytest.mark.parametrize("family", ["qwen_image", "z_image"])
def test_prompts_of_different_lengths_are_edited(captured, family):
    """A target shorter than the source is padded (Z-Image's model pads the context further, to 32 tokens, and
    the re-weight factors with 1): the edit runs and equals its reference."""
    weights = ("Reweight", {"weights": "dog=2.5", **WINDOWS})
    settings = dict(family=family, target="a blue dog", edit="AttentionRefine", chain=[weights], steps=2)
    comfy_harness.run_graph(edit_graph(**settings, capture="fused"))
    comfy_harness.run_graph(edit_graph(**settings, capture="reference", reference=True))
    assert torch.isfinite(captured["fused"]).all()
    assert relative(captured["fused"], captured["reference"]) < 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_inputs_are_named_and_the_next_prompt_runs(comfy, captured, family):
    unknown = edit_graph(family=family, target=SOURCE, chain=[("Reweight", {"weights": "zebra=2", **WINDOWS})], steps=2)
    with pytest.raises(comfy.GraphError, match="weights: the word 'zebra' is not in.*its words: a red cat riding a"):
        comfy.run_graph(unknown)
    with pytest.raises(comfy.GraphError, match="target prompt is empty"):
        comfy.run_graph(edit_graph(family=family, target="  \n ", steps=2))
    with pytest.raises(comfy.GraphError, match="word_schedule: per-word windows do not apply"):
        comfy.run_graph(edit_graph(family=family, edit_inputs={"word_schedule": "car=0.3"}, steps=2))
    comfy.run_graph(edit_graph(family=family, source=SOURCE, target=SOURCE, steps=2))
    assert torch.equal(captured["out"][0], captured["out"][1])


@pytest.mark.parametrize("family", FAMILIES)
def test_another_packs_attention_override_is_composed_with(comfy, captured, family):
    calls = comfy.loaded_module(comfy.FIXTURE_NODES, "other_packs").CALLS
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
    assert calls["override"] == 2 * CALLS_PER_STEP[family]  # every attention call of the 2 steps, once
    with_other = captured["out"]
    assert torch.equal(with_other[0], with_other[1])
    comfy.run_graph(edit_graph(family=family, source=SOURCE, target=SOURCE, steps=2))
    assert relative(captured["out"][0], with_other[0]) > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_an_edit_that_never_reaches_the_joint_attention_fails_the_prompt(comfy, captured, family):
    graph = edit_graph(family=family, target="a blue dog riding a bicycle", steps=2)
    graph["bypass"] = {"class_type": "P2PTestDropAttentionPatches", "inputs": {"model": ["edit", 0], "kinds": "joint"}}
    graph["sample"]["inputs"]["model"] = ["bypass", 0]
    with pytest.raises(comfy.GraphError, match=r"never reached the model's joint attention.*unedited"):
        comfy.run_graph(graph)
    assert "out" not in captured
