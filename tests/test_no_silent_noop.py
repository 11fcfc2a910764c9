"""Never a silent no-op: a model patched by the pack that samples without the edit reaching its attention
fails the prompt with a message saying why and what to do; an edit whose plan is inactive by choice does not."""

from __future__ import annotations

import pytest
import torch

from devtools import harness
from devtools.graphs import edit_graph

harness.boot()

SAME = "a red cat riding a bicycle"


def bypassed(kinds: str, **settings) -> dict:
    """The edit graph with a UNet wrapper after the edit that runs the UNet without the `kinds` patches."""
    graph = edit_graph(**settings)
    graph["bypass"] = {"class_type": "P2PTestDropAttentionPatches", "inputs": {"model": ["edit", 0], "kinds": kinds}}
    graph["sample"]["inputs"]["model"] = ["bypass", 0]
    return graph


@pytest.mark.parametrize(
    "kinds, missing",
    [("attn1, attn2", "self-attention \\(attn1\\) and cross-attention \\(attn2\\)"), ("attn2", "cross-attention")],
)
def test_an_edit_that_never_reaches_the_attention_fails_the_prompt(comfy, captured, kinds, missing):
    with pytest.raises(comfy.GraphError, match=f"never reached the model's {missing}.*unedited"):
        comfy.run_graph(bypassed(kinds))
    assert "out" not in captured


def test_the_message_says_what_to_do(comfy):
    with pytest.raises(comfy.GraphError) as error:
        comfy.run_graph(bypassed("attn2", sampler="euler_ancestral"))
    import comfyui_version

    message = error.value.message
    assert f"ComfyUI ({comfyui_version.__version__})" in message
    assert "A node after the P2P nodes" in message and "without that node" in message


def test_a_map_recorder_that_never_sees_a_layer_fails_too(comfy):
    graph = edit_graph(edit=None, batch=1)
    graph["recorder"] = {
        "class_type": "AttentionMapRecorder",
        "inputs": {"model": ["model", 0], "prompts": ["pair", 1]},
    }
    graph["bypass"] = {
        "class_type": "P2PTestDropAttentionPatches",
        "inputs": {"model": ["recorder", 0], "kinds": "attn2"},
    }
    graph["sample"]["inputs"]["model"] = ["bypass", 0]
    with pytest.raises(comfy.GraphError, match="never reached the model's cross-attention"):
        comfy.run_graph(graph)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_an_empty_window_is_no_error(comfy, captured, sampler):
    """cross_replace 0 and self_replace 0 edit nothing by choice: the rows are the prompts sampled plainly
    from the same noise."""
    settings = dict(sampler=sampler, steps=3)
    comfy.run_graph(edit_graph(**settings, edit_inputs={"cross_replace": 0.0, "self_replace": 0.0}, capture="edit"))
    plain = edit_graph(**settings, edit=None, batch=2, capture="plain")
    plain["same_noise"] = {
        "class_type": "LatentBatchSeedBehavior",
        "inputs": {"samples": ["latent", 0], "seed_behavior": "fixed"},
    }
    plain["sample"]["inputs"]["latent_image"] = ["same_noise", 0]
    comfy.run_graph(plain)
    assert torch.equal(captured["edit"], captured["plain"])


def test_the_patches_are_reached_after_an_error(comfy, captured):
    with pytest.raises(comfy.GraphError):
        comfy.run_graph(bypassed("attn1, attn2"))
    comfy.run_graph(edit_graph(target=SAME))
    assert torch.equal(captured["out"][0], captured["out"][1])
