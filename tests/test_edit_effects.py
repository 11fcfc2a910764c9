"""Edits that do something: each equals its explicit-softmax reference AND moves the target away from
what the target prompt gives when sampled unedited from the same noise.

An identity edit (target == source) passes with a patch that does nothing; these tests do not.

The model: the tiny test UNet hardly listens to its prompt (its output is the shared noise plus a
small model term: changing "bicycle" to "car" moved the latent by 3e-6 of its scale) and attends
almost uniformly, so every graph here samples it through P2PTestSharpAttention (query/key weights
x5, attention outputs x30, a weight patch on the same model).

Distances are relative max differences in units of the PROMPT EFFECT: how far the target prompt's
plain image lies from the source prompt's, both sampled alone from the same seed (the plain-vs-plain
comparison). The shared noise cancels in it, so it measures what the prompts, and therefore an
attention edit, can move.

- EQUAL (1 % of the prompt effect): fused == reference, and an edit with empty windows == the plain
  target. Each pair computes the same thing in fp32 by other kernels or at another batch position;
  what a patch that does nothing leaves is this rounding (measured 0.03 % to 0.4 %).
- MARGIN (10 % of the prompt effect, ten times EQUAL): edited != unedited, so that no rounding
  within EQUAL can pass for an edit. Word swaps move the target by 30 % to 90 % of the prompt effect.
"""

from __future__ import annotations

import pytest
import torch

from devtools import harness as comfy_harness
from devtools.graphs import edit_graph

EQUAL = 0.01
MARGIN = 10 * EQUAL
SOURCE = "a red cat riding a bicycle"
TARGET = "a red cat riding a car"
SAMPLERS = {
    "deterministic": "euler",
    "multistep": "dpmpp_2m",
    "ancestral": "euler_ancestral",
    "sde": "dpmpp_2m_sde",
    "in-between (heun)": "heun",
    "in-between (dpmpp_2s)": "dpmpp_2s_ancestral",
}


def sharpened(graph: dict) -> dict:
    """The graph with P2PTestSharpAttention between its loader (node "model") and every MODEL input."""
    graph = dict(graph)
    graph["loaded"] = graph.pop("model")
    for node in graph.values():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and value[0] == "model":
                node["inputs"][name] = ["sharp", 0] if value[1] == 0 else ["loaded", value[1]]
    graph["sharp"] = {
        "class_type": "P2PTestSharpAttention",
        "inputs": {"model": ["loaded", 0], "query_key_scale": 5.0, "output_scale": 30.0},
    }
    return graph


def run(graph: dict) -> None:
    """Runs the sharpened graph; a real-shape checkpoint's graphs on the caching executor, so that the checkpoint
    is loaded once for all of a test's runs, not once per run (5 GB each on SD2)."""
    comfy_harness.run_graph(sharpened(graph), keep_outputs=graph["model"]["class_type"] == "CheckpointLoaderSimple")


def distance(a: torch.Tensor, b: torch.Tensor, unit: float) -> float:
    """max |a - b| in units of `unit` (a prompt effect)."""
    return float((a - b).abs().max()) / unit


def through(graph: dict, front_door: str) -> dict:
    """The graph with its KSampler replaced by KSamplerAdvanced or SamplerCustomAdvanced (same settings)."""
    if front_door == "KSampler":
        return graph
    settings = graph["sample"]["inputs"]
    model = settings["model"]
    if front_door == "KSamplerAdvanced":
        graph["sample"] = {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "model": model,
                "positive": settings["positive"],
                "negative": settings["negative"],
                "latent_image": settings["latent_image"],
                "add_noise": "enable",
                "noise_seed": settings["seed"],
                "steps": settings["steps"],
                "cfg": settings["cfg"],
                "sampler_name": settings["sampler_name"],
                "scheduler": settings["scheduler"],
                "start_at_step": 0,
                "end_at_step": 10000,
                "return_with_leftover_noise": "disable",
            },
        }
        return graph
    graph.update(
        {
            "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": settings["seed"]}},
            "guider": {
                "class_type": "CFGGuider",
                "inputs": {
                    "model": model,
                    "positive": settings["positive"],
                    "negative": settings["negative"],
                    "cfg": settings["cfg"],
                },
            },
            "select": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": settings["sampler_name"]}},
            "sigmas": {
                "class_type": "BasicScheduler",
                "inputs": {
                    "model": model,
                    "scheduler": settings["scheduler"],
                    "steps": settings["steps"],
                    "denoise": 1.0,
                },
            },
        }
    )
    graph["sample"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["noise", 0],
            "guider": ["guider", 0],
            "sampler": ["select", 0],
            "sigmas": ["sigmas", 0],
            "latent_image": settings["latent_image"],
        },
    }
    return graph


def plain(settings: dict, text: str, front_door: str = "KSampler") -> torch.Tensor:
    """`text` sampled alone by the unedited model from the same seed: [1, C, H, W]."""
    graph = edit_graph(**{**settings, "edit": None, "chain": [], "reference": False}, capture="plain")
    graph["plain_prompt"] = {
        "class_type": "CLIPTextEncode",
        "inputs": {"clip": ["model", 1], "text": text},
    }
    graph["sample"]["inputs"]["positive"] = ["plain_prompt", 0]
    run(through(graph, front_door))
    return comfy_harness.captured_latents()["plain"]


def fused_and_reference(settings: dict, front_door: str = "KSampler") -> tuple[torch.Tensor, torch.Tensor]:
    """The edit sampled by the pack's fused path and by the explicit-softmax reference: [1 + N, C, H, W] each."""
    run(through(edit_graph(**settings, capture="fused"), front_door))
    run(through(edit_graph(**settings, capture="reference", reference=True), front_door))
    latents = comfy_harness.captured_latents()
    return latents["fused"], latents["reference"]


def prompt_effect(settings: dict, contrast: str | None = None, front_door: str = "KSampler") -> float:
    """max |plain(target) - plain(contrast)|: the unit of every distance (contrast: the source prompt)."""
    effect = float(
        (plain(settings, settings["target"], front_door) - plain(settings, contrast or settings["source"], front_door))
        .abs()
        .max()
    )
    assert effect > 0, "the two prompts give the same image: no unit to measure an edit in"
    return effect


def check_edit(
    settings: dict, front_door: str = "KSampler", contrast: str | None = None, moves: bool = True
) -> tuple[torch.Tensor, float]:
    """Asserts fused == reference within EQUAL and (`moves`) the target != the plain target by MARGIN;
    returns (the fused latents [1 + N, C, H, W], the prompt effect they were measured in)."""
    unit = prompt_effect(settings, contrast, front_door)
    fused, reference = fused_and_reference(settings, front_door)
    assert torch.isfinite(fused).all()
    assert distance(fused, reference, unit) <= EQUAL
    if moves:
        moved = distance(fused[1], plain(settings, settings["target"], front_door)[0], unit)
        assert moved > MARGIN, f"the edit moved the target by {moved:.2%} of the prompt effect only: it did nothing"
    return fused, unit


WORD_SWAP = dict(source=SOURCE, target=TARGET, steps=3)


@pytest.mark.parametrize("sampler", list(SAMPLERS.values()), ids=list(SAMPLERS))
def test_word_swap_equals_its_reference_and_changes_the_target(captured, sampler):
    check_edit({**WORD_SWAP, "sampler": sampler})


@pytest.mark.parametrize("front_door", ["KSamplerAdvanced", "SamplerCustomAdvanced"])
@pytest.mark.parametrize("sampler", ["dpmpp_2m", "dpmpp_2m_sde"])
def test_word_swap_through_the_advanced_samplers(captured, front_door, sampler):
    check_edit({**WORD_SWAP, "sampler": sampler}, front_door)


def test_refine_and_reweight_change_the_target(captured):
    check_edit(dict(source=SOURCE, target="a fluffy red cat riding a bicycle", edit="AttentionRefine", steps=3))
    reweight = [("Reweight", {"weights": "red=3", "cross_replace": 0.8, "self_replace": 0.4})]
    # Re-weight alone samples the source prompt twice: its unit is the effect of dropping "red".
    check_edit(
        dict(source=SOURCE, target=SOURCE, edit=None, chain=reweight, steps=3), contrast="a cat riding a bicycle"
    )


def test_v_prediction(captured):
    check_edit({**WORD_SWAP, "family": "sd15_v", "sampler": "euler_ancestral"})


def test_sdxl(captured):
    check_edit({**WORD_SWAP, "family": "sdxl", "sampler": "dpmpp_2m", "steps": 2})


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_an_edit_with_empty_windows_is_the_plain_target(captured, family):
    """With no injection window the target row is the target prompt sampled alone (its own text and,
    on SDXL, its own pooled output), within EQUAL: the floor a patch that does nothing would leave."""
    settings = dict(
        family=family, source=SOURCE, target=TARGET, steps=2, edit_inputs={"cross_replace": 0.0, "self_replace": 0.0}
    )
    unit = prompt_effect(settings)
    run(edit_graph(**settings, capture="edited"))
    assert distance(captured["edited"][1], plain(settings, TARGET)[0], unit) <= EQUAL


@pytest.mark.slow
def test_sd2_v_prediction_real_shapes(captured):
    from devtools.checkpoints import checkpoint

    loader = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint("sd2_v")}}
    check_edit({**WORD_SWAP, "loader": loader, "steps": 2, "sampler": "dpmpp_2m"})


# The inputs that shape the injection windows and layers: each must change the result, and each
# result must still be its reference. Cross attention alone (self_replace 0) or self alone, 4 steps:
# a window "a-b" covers steps int(4a) <= step < int(4b).
CROSS_ONLY = {"cross_replace": 0.8, "self_replace": 0.0}
SELF_ONLY = {"cross_replace": 0.0, "self_replace": 1.0}
NO_WINDOW = {"cross_replace": 0.0, "self_replace": 0.0}
STEPS = 4


def edited(name: str, inputs: dict) -> torch.Tensor:
    run(edit_graph(source=SOURCE, target=TARGET, steps=STEPS, edit_inputs=inputs, capture=name))
    return comfy_harness.captured_latents()[name][1]


def checked(inputs: dict, moves: bool = True) -> tuple[torch.Tensor, float]:
    """The target row of a checked edit (check_edit) with these edit inputs, and its unit."""
    fused, unit = check_edit(dict(WORD_SWAP, steps=STEPS, edit_inputs=inputs), moves=moves)
    return fused[1], unit


def test_word_schedule_sets_the_window_of_its_word(captured):
    default = edited("default", CROSS_ONLY)
    assert torch.equal(default, edited("same", {**CROSS_ONLY, "word_schedule": "car=0.8"}))  # its own window
    scheduled, unit = checked({**CROSS_ONLY, "word_schedule": "car=0"})  # "car" attends freely
    assert distance(scheduled, default, unit) > MARGIN


def test_cross_start_delays_the_cross_attention_injection(captured):
    """The first step carries most of a 4-step run's motion (the largest sigma): a window that skips it
    moves the target by a few % of the prompt effect only, so the late edit is checked against its
    reference and against the window from 0, which the full edit's MARGIN check already tells apart."""
    assert torch.equal(edited("empty", {**CROSS_ONLY, "cross_start": 0.8}), edited("none", NO_WINDOW))
    full, unit = checked(CROSS_ONLY)  # steps 0-2
    late, _ = checked({**CROSS_ONLY, "cross_start": 0.25}, moves=False)  # steps 1-2
    assert distance(late, full, unit) > MARGIN


def test_self_start_delays_the_self_attention_injection(captured):
    assert torch.equal(edited("empty", {**SELF_ONLY, "self_start": 1.0}), edited("none", NO_WINDOW))
    full, unit = checked(SELF_ONLY)  # steps 0-3
    late, _ = checked({**SELF_ONLY, "self_start": 0.25}, moves=False)  # steps 1-3
    assert distance(late, full, unit) > MARGIN


def test_self_layers_choose_the_injected_layers(captured):
    """The tiny UNet has self-attention at 1/2 and 1/4 of the latent: coarse takes the 1/4 layers
    only, all layers take both, so the two results differ and each differs from no injection
    (check_edit: from the plain target)."""
    coarse, unit = checked({**SELF_ONLY, "self_layers": "coarse (paper: 16x16 at 512 px)"})
    every, _ = checked({**SELF_ONLY, "self_layers": "all layers"})
    assert distance(coarse, every, unit) > MARGIN


@pytest.fixture
def embedding(comfy, tmp_path):
    """`embedding:p2p_stripes`, two random vectors, made visible to the tiny SD1.5 model's tokenizer."""
    import safetensors.torch

    _, clip, _ = comfy.tiny_model("sd15")
    tokenizer = clip.tokenizer.clip_l
    width = clip.cond_stage_model.clip_l.transformer.get_input_embeddings().weight.shape[1]
    vectors = torch.randn(2, width, generator=torch.Generator().manual_seed(3))
    safetensors.torch.save_file({"clip_l": vectors}, str(tmp_path / "p2p_stripes.safetensors"))
    before = tokenizer.embedding_directory
    tokenizer.embedding_directory = [str(tmp_path)]
    yield "embedding:p2p_stripes"
    tokenizer.embedding_directory = before


def test_an_embedding_in_the_prompts(captured, embedding):
    source = f"a red {embedding} cat riding a bicycle"
    target = f"a red {embedding} cat riding a car"
    settings = dict(source=source, target=target, steps=3)
    _, unit = check_edit(settings)
    # The embedding reached the text encoder: the prompt without it samples another image.
    assert distance(plain(settings, target), plain(settings, TARGET), unit) > MARGIN
    run(edit_graph(source=source, target=source, steps=3, sampler="euler_ancestral"))
    assert torch.equal(captured["out"][0], captured["out"][1])
