"""Bad input ends the prompt with a message naming the word or value at fault."""

import pytest
import torch

from devtools.graphs import edit_graph

REWEIGHT = {"cross_replace": 0.8, "self_replace": 0.4}


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(chain=[("Reweight", {"weights": "zebra=2", **REWEIGHT})]), r"'zebra'.*not in the prompt.*riding a car"),
        (dict(edit_inputs={"word_schedule": "giraffe=0.3"}), r"word_schedule.*'giraffe'"),
        (dict(target="   "), r"target prompt is empty"),
        (dict(chain=[("Reweight", {"weights": "car=50", **REWEIGHT})]), r"'car'.*'50'.*out of range"),
        (dict(chain=[("Reweight", {"weights": "car=2|3", **REWEIGHT})]), r"'car'.*2 values for 1 target"),
        (dict(chain=[("Reweight", {"weights": "car", **REWEIGHT})]), r"'car' is not of the form word=value"),
        (dict(edit_inputs={"word_schedule": "car=0.9-0.2"}), r"'car'.*'0.9-0.2'"),
        (dict(edit_inputs={"cross_start": 0.9}), r"cross_replace.*start 0.9 is after the end 0.8"),
        (dict(target="a red cat riding a big bicycle"), r"adds 'big'.*AttentionRefine"),
        (dict(batch=3), r"latent holds 3 images but PromptPair has 2 prompts"),
    ],
)
def test_bad_input_is_named(comfy, settings, message):
    with pytest.raises(comfy.GraphError, match=message):
        comfy.run_graph(edit_graph(**settings))


def test_a_nodes_error_starts_with_its_display_name(comfy):
    with pytest.raises(comfy.GraphError) as error:
        comfy.run_graph(edit_graph(chain=[("Reweight", {"weights": "zebra=2", **REWEIGHT})]))
    assert error.value.message.startswith("P2P Reweight (fader): weights: the word 'zebra'")


def test_self_layers_by_id_or_by_former_label_give_the_same_edit(comfy, captured):
    """Workflows saved with the option's label (before the ids) sample as with the id."""
    comfy.run_graph(edit_graph(edit_inputs={"self_layers": "all"}, capture="id"))
    comfy.run_graph(edit_graph(edit_inputs={"self_layers": "all layers"}, capture="label"))
    comfy.run_graph(edit_graph(capture="default"))
    assert torch.equal(captured["id"], captured["label"])
    assert not torch.equal(captured["id"], captured["default"])


def test_a_model_without_cross_attention_is_refused(comfy):
    graph = edit_graph()
    graph["model"] = {"class_type": "P2PTestTinyModel", "inputs": {"family": "no_attention", "seed": 0}}
    with pytest.raises(comfy.GraphError, match="no cross-attention transformer blocks"):
        comfy.run_graph(graph)


def test_a_plain_conditioning_with_a_p2p_model_is_refused(comfy):
    graph = edit_graph()
    graph["plain"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": "a cat"}}
    graph["sample"]["inputs"]["positive"] = ["plain", 0]
    with pytest.raises(comfy.GraphError, match="positive conditioning holds 1 prompt.*PromptPair"):
        comfy.run_graph(graph)


def test_after_an_error_the_next_good_prompt_runs(comfy, captured):
    with pytest.raises(comfy.GraphError):
        comfy.run_graph(edit_graph(chain=[("Reweight", {"weights": "zebra=2", **REWEIGHT})]))
    comfy.run_graph(edit_graph(target="a red cat riding a bicycle"))
    assert torch.equal(captured["out"][0], captured["out"][1])


def test_another_packs_attention_patch_is_composed_with(comfy, captured):
    calls = comfy.loaded_module(comfy.FIXTURE_NODES, "other_packs").CALLS
    graph = edit_graph(target="a red cat riding a bicycle")
    graph["other"] = {
        "class_type": "P2PTestOtherAttn2Replace",
        "inputs": {"model": ["model", 0], "key": "transformer", "strength": 1.0},
    }
    graph["edit"]["inputs"]["model"] = ["other", 0]
    calls.clear()
    comfy.run_graph(graph)
    assert calls["attn2 transformer"], "the other pack's patch was dropped"
    with_other = captured["out"]
    assert torch.equal(with_other[0], with_other[1])
    comfy.run_graph(edit_graph(target="a red cat riding a bicycle"))
    assert (captured["out"][0] - with_other[0]).abs().max() > 1e-3


def test_lora_on_the_same_model(comfy, captured):
    graph = edit_graph(target="a red cat riding a bicycle", sampler="dpmpp_sde")
    lora = comfy.tiny_lora()
    graph["lora"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"model": ["model", 0], "lora_name": lora, "strength_model": 1.0},
    }
    graph["edit"]["inputs"]["model"] = ["lora", 0]
    comfy.run_graph(graph)
    with_lora = captured["out"]
    assert torch.equal(with_lora[0], with_lora[1])
    comfy.run_graph(edit_graph(target="a red cat riding a bicycle", sampler="dpmpp_sde"))
    assert (captured["out"][0] - with_lora[0]).abs().max() > 1e-3
