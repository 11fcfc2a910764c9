"""The edit nodes in the real host: identity, fused == reference, batching, samplers, no leak."""

import inspect

import pytest
import torch

from devtools import harness as comfy_harness
from devtools.graphs import edit_graph

comfy_harness.boot()
import comfy.k_diffusion.sampling  # noqa: E402
import comfy.samplers  # noqa: E402

SAME = "a red cat riding a bicycle"


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("sampler", comfy.samplers.SAMPLER_NAMES)
def test_identity_edit_reproduces_the_source_bit_for_bit(captured, family, sampler):
    comfy_harness.run_graph(edit_graph(family=family, target=SAME, sampler=sampler, steps=3))
    out = captured["out"]
    assert out.shape[0] == 2 and torch.isfinite(out).all()
    assert torch.equal(out[0], out[1])


NOISE_DRAWING_SAMPLERS = [
    name
    for name in comfy.samplers.SAMPLER_NAMES
    if "noise_sampler" in inspect.signature(getattr(comfy.k_diffusion.sampling, f"sample_{name}", len)).parameters
]
"""The host's samplers that take a noise sampler (ancestral, SDE, ...), read off the host's own functions."""


@pytest.mark.parametrize("sampler", NOISE_DRAWING_SAMPLERS)
def test_shared_noise_is_the_noise_the_sampler_draws_for_the_source_alone(captured, sampler):
    """The branches share the noise that the sampler itself would draw for one row (its own kind: a
    Brownian tree or independent Gaussian draws), so the source row is the source prompt sampled alone."""
    comfy_harness.run_graph(edit_graph(target=SAME, sampler=sampler, steps=3, capture="edit"))
    alone = edit_graph(edit=None, target=SAME, sampler=sampler, steps=3, capture="alone")
    alone["source"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": SAME}}
    alone["sample"]["inputs"]["positive"] = ["source", 0]
    comfy_harness.run_graph(alone)
    edit, source = captured["edit"], captured["alone"]
    assert torch.isfinite(edit).all() and source.shape[0] == 1
    assert (edit[0] - source[0]).abs().max() <= 1e-4 * source.abs().max()


def other_pack_sampler_graph(own_noise_sampler: bool, edit: str | None = "AttentionReplace") -> dict:
    """edit_graph sampled by SamplerCustomAdvanced with the fixture P2PTestOtherPackSampler."""
    graph = edit_graph(target=SAME, edit=edit, steps=3)
    model = graph["sample"]["inputs"]["model"]
    graph.update(
        {
            "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
            "guider": {
                "class_type": "CFGGuider",
                "inputs": {"model": model, "positive": ["pair", 0], "negative": ["negative", 0], "cfg": 5.0},
            },
            "other_sampler": {
                "class_type": "P2PTestOtherPackSampler",
                "inputs": {"own_noise_sampler": own_noise_sampler},
            },
            "sigmas": {
                "class_type": "BasicScheduler",
                "inputs": {"model": model, "scheduler": "normal", "steps": 3, "denoise": 1.0},
            },
        }
    )
    graph["sample"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["noise", 0],
            "guider": ["guider", 0],
            "sampler": ["other_sampler", 0],
            "sigmas": ["sigmas", 0],
            "latent_image": ["latent", 0],
        },
    }
    return graph


@pytest.mark.parametrize(
    "own_noise_sampler, message",
    [
        (False, "the sampler 'other_pack_ancestral' draws noise .* not know"),
        (True, "the sampler 'other_pack_ancestral' comes with its own noise sampler"),
    ],
)
def test_a_sampler_whose_noise_the_pack_cannot_share_is_refused_by_name(captured, own_noise_sampler, message):
    graph = other_pack_sampler_graph(own_noise_sampler, edit=None)
    graph["latent"]["inputs"]["batch_size"] = 2
    comfy_harness.run_graph(graph)  # the sampler itself samples (2 rows of its own noise, no edit)
    assert torch.isfinite(captured["out"]).all()
    with pytest.raises(comfy_harness.GraphError, match=message):
        comfy_harness.run_graph(other_pack_sampler_graph(own_noise_sampler))


@pytest.mark.parametrize("scheduler", comfy.samplers.SCHEDULER_NAMES)
def test_identity_edit_for_every_scheduler(captured, scheduler):
    comfy_harness.run_graph(edit_graph(target=SAME, sampler="dpmpp_2m_sde", scheduler=scheduler, steps=3))
    assert torch.equal(captured["out"][0], captured["out"][1])


@pytest.mark.parametrize(
    "edit, target",
    [("AttentionReplace", SAME), ("AttentionRefine", SAME), ("AttentionReplace", f"{SAME}\n{SAME}")],
)
def test_identity_edit_every_node_and_several_targets(captured, edit, target):
    """Bit-identical with one target. With more, the host's own small matrix products (the time
    embedding, M = batch rows) round a row differently by its position in the batch: ~1e-7."""
    comfy_harness.run_graph(edit_graph(edit=edit, target=target, sampler="euler_ancestral"))
    out = captured["out"]
    assert out.shape[0] == 1 + len(target.splitlines())
    for row in out[1:]:
        if out.shape[0] == 2:
            assert torch.equal(out[0], row)
        else:
            assert (row - out[0]).abs().max() <= 1e-6 * out[0].abs().max()


EDITS = {
    "replace": dict(target="a blue dog riding a bicycle"),
    "refine": dict(edit="AttentionRefine", target="a photo of a red cat riding a bicycle at night"),
    "reweight": dict(
        edit=None,
        target=SAME,
        chain=[("Reweight", {"weights": "red=3, cat=-1", "cross_replace": 0.8, "self_replace": 0.4})],
    ),
    "replace+reweight": dict(
        target="a red dog riding a bicycle",
        chain=[("Reweight", {"weights": "dog=2.5", "cross_replace": 0.8, "self_replace": 0.4})],
    ),
    "refine+reweight+reweight": dict(
        edit="AttentionRefine",
        target="a fluffy red cat riding a bicycle",
        chain=[
            ("Reweight", {"weights": "fluffy=-2", "cross_replace": 0.8, "self_replace": 0.4}),
            ("Reweight", {"weights": "fluffy=1.5, cat=0.5", "cross_replace": 0.8, "self_replace": 0.4}),
        ],
    ),
}


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("name", list(EDITS))
def test_fused_edit_equals_the_explicit_reference_over_a_run(captured, family, name):
    settings = dict(
        family=family, sampler="dpmpp_2m", steps=6, edit_inputs={"self_layers": "all layers"}, **EDITS[name]
    )
    settings.setdefault("edit", "AttentionReplace")
    comfy_harness.run_graph(edit_graph(**settings, capture="fused"))
    comfy_harness.run_graph(edit_graph(**settings, capture="reference", reference=True))
    comfy_harness.run_graph(edit_graph(**{**settings, "edit": None, "chain": []}, batch=2, capture="plain"))
    fused, reference, plain = captured["fused"], captured["reference"], captured["plain"]
    scale = reference.abs().max()
    assert (fused - reference).abs().max() <= 1e-4 * scale
    # The edit did something: the target is not what plain sampling of its prompt gives.
    assert (fused[1] - plain[1]).abs().max() > 1e-2 * scale


def test_the_unpatched_model_samples_the_same_after_an_edit(captured):
    plain = dict(edit=None, target=SAME, batch=2, sampler="euler_ancestral")
    comfy_harness.run_graph(edit_graph(**plain, capture="before"))
    comfy_harness.run_graph(
        edit_graph(
            sampler="euler_ancestral",
            chain=[("Reweight", {"weights": "car=2", "cross_replace": 0.8, "self_replace": 0.4})],
        )
    )
    comfy_harness.run_graph(edit_graph(**plain, capture="after"))
    assert torch.equal(captured["before"], captured["after"])


def test_a_latent_of_batch_one_plus_n_gets_the_same_noise_in_every_row(captured):
    comfy_harness.run_graph(edit_graph(target=SAME, batch=2, capture="two"))
    comfy_harness.run_graph(edit_graph(target=SAME, batch=1, capture="one"))
    assert torch.equal(captured["two"], captured["one"])


@pytest.mark.parametrize("cfg, negative", [(1.0, ""), (5.0, ", ".join(["blurry, ugly, low quality"] * 40))])
def test_cfg_one_and_cond_uncond_in_separate_calls(captured, cfg, negative):
    """cfg 1 drops the unconditional pass; a negative of many chunks makes ComfyUI split the batch."""
    comfy_harness.run_graph(edit_graph(target=SAME, cfg=cfg, negative=negative, sampler="euler_ancestral"))
    assert torch.equal(captured["out"][0], captured["out"][1])
    comfy_harness.run_graph(edit_graph(cfg=cfg, negative=negative, capture="swap", reference=True))
    comfy_harness.run_graph(edit_graph(cfg=cfg, negative=negative, capture="fused"))
    assert (captured["swap"] - captured["fused"]).abs().max() <= 1e-4 * captured["swap"].abs().max()


def test_prompts_of_different_lengths_refine(captured):
    long_target = "a red cat riding a bicycle, " + ", ".join(["highly detailed, sharp focus"] * 20)
    comfy_harness.run_graph(edit_graph(edit="AttentionRefine", target=long_target, capture="fused"))
    comfy_harness.run_graph(edit_graph(edit="AttentionRefine", target=long_target, capture="ref", reference=True))
    assert (captured["fused"] - captured["ref"]).abs().max() <= 1e-4 * captured["ref"].abs().max()


def test_v_prediction_model(captured):
    comfy_harness.run_graph(edit_graph(family="sd15_v", target=SAME, sampler="euler_ancestral"))
    assert torch.equal(captured["out"][0], captured["out"][1])


def test_fader_sweep_one_weight_per_target(captured):
    sweep = "\n".join(["a fluffy red cat riding a bicycle"] * 4)
    weights = {"weights": "fluffy=-2|0|2|4", "cross_replace": 0.8, "self_replace": 0.4}
    comfy_harness.run_graph(
        edit_graph(
            edit="AttentionRefine",
            source="a fluffy red cat riding a bicycle",
            target=sweep,
            chain=[("Reweight", weights)],
        )
    )
    out = captured["out"]
    assert out.shape[0] == 5
    # Weight 1 would be the source; every other weight moves away from it, the farther the more.
    distance = [(row - out[0]).abs().mean().item() for row in out[1:]]
    assert distance[2] < distance[3] and distance[1] < distance[0]


REAL_SHAPE_SAMPLERS = [
    name
    for name in (
        "euler",  # deterministic
        "heun",  # in-between evaluations
        "euler_ancestral",  # Gaussian noise draws
        "dpmpp_2s_ancestral",  # Gaussian draws between in-between evaluations
        "dpmpp_sde",  # Brownian tree, in-between evaluations
        "dpmpp_2m_sde",  # Brownian tree
        "dpmpp_3m_sde",
        "sa_solver_pece",  # predictor-corrector with noise
        "exp_heun_2_x0_sde",  # new in ComfyUI 0.8.0; an identity edit once gave NaN with it
        "uni_pc",
        "lcm",
        "ddim",
    )
    if name in comfy.samplers.SAMPLER_NAMES
]
"""One sampler of each kind (how it draws noise, whether it evaluates between steps): every sampler of the host
is run on the tiny models above; these again on the real shapes, where precision and memory paths differ."""


@pytest.mark.slow
@pytest.mark.parametrize("sampler", REAL_SHAPE_SAMPLERS)
def test_identity_on_the_real_sd15_shapes(captured, sampler):
    from devtools.checkpoints import checkpoint

    loader = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint("sd15")}}
    graph = edit_graph(loader=loader, target=SAME, sampler=sampler, steps=2, width=64, height=64)
    comfy_harness.run_graph(graph, keep_outputs=True)
    out = captured["out"]
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], out[1])


def test_ksampler_advanced_and_sampler_custom_advanced(captured):
    graph = edit_graph(target=SAME, sampler="dpmpp_2m_sde", capture="ksampler")
    comfy_harness.run_graph(graph)
    common = {"positive": ["pair", 0], "negative": ["negative", 0], "latent_image": ["latent", 0]}
    graph["sample"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "model": ["edit", 0],
            **common,
            "add_noise": "enable",
            "noise_seed": 1,
            "steps": 4,
            "cfg": 5.0,
            "sampler_name": "dpmpp_2m_sde",
            "scheduler": "normal",
            "start_at_step": 0,
            "end_at_step": 10000,
            "return_with_leftover_noise": "disable",
        },
    }
    graph["capture"]["inputs"]["name"] = "advanced"
    comfy_harness.run_graph(graph)
    graph.update(
        {
            "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
            "guider": {
                "class_type": "CFGGuider",
                "inputs": {"model": ["edit", 0], "positive": ["pair", 0], "negative": ["negative", 0], "cfg": 5.0},
            },
            "select": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m_sde"}},
            "sigmas": {
                "class_type": "BasicScheduler",
                "inputs": {"model": ["edit", 0], "scheduler": "normal", "steps": 4, "denoise": 1.0},
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
            "latent_image": ["latent", 0],
        },
    }
    graph["capture"]["inputs"]["name"] = "custom"
    comfy_harness.run_graph(graph)
    for name in ("ksampler", "advanced", "custom"):
        out = captured[name]
        assert out.shape[0] == 2 and torch.equal(out[0], out[1]), name
    # The same sampler, schedule and seed through the three front doors draw the same picture.
    assert torch.equal(captured["ksampler"], captured["advanced"])
    assert (captured["custom"] - captured["ksampler"]).abs().max() <= 1e-4 * captured["ksampler"].abs().max()
