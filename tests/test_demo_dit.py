"""The built-in DiT demo model (an SD3 MMDiT of ComfyUI's own class) in the real host: P2PDemoModelLoader's
`model` choice, the stock KSampler on it, and the word swap on it."""

from __future__ import annotations

import numpy as np
import torch

from demo.detect import detect
from devtools.demo_graphs import Sampling, demo_loader, text_to_image_graph

SOURCE = "a red circle next to a blue square on a yellow background"
TARGET = "a green circle next to a blue square on a yellow background"
QUICK = Sampling(steps=8, cfg=5.0)
FEW = Sampling(steps=3, cfg=5.0)
"""For the checks that only need a sample: which model ran, that it ran."""


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def foreground(latent: torch.Tensor) -> np.ndarray:
    """The detected objects' pixels `[H, W]` bool of a demo latent `[3, H, W]` (pixels in [-1, 1])."""
    found = detect(((latent + 1.0) / 2.0).clamp(0, 1))
    assert found.objects, "no object drawn"
    return found.foreground


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of two latents `[3, H, W]` (pixels in [-1, 1])."""
    return float((a - b).abs().mean())


def test_dit_choice_is_an_sd3_model_with_joint_attention_sites(comfy) -> None:
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
    from comfy.model_base import SD3

    loader = comfy.pack("nodes.demo_model")
    model, clip, _ = loader.P2PDemoModelLoader.execute(model="dit (SD3-style)").result
    assert isinstance(model.model, SD3) and isinstance(model.model.diffusion_model, MMDiT)
    sites = comfy.pack("host.joint_models").SD3Attention().sites(model)
    assert [site.block for site in sites] == [("double", i) for i in range(6)]
    cond, pooled = clip.encode_from_tokens(clip.tokenize(SOURCE), return_pooled=True)
    assert cond.shape == (1, 77, 128) and pooled.shape == (1, 128)  # the pooled output is the DiT's `y`


def test_loader_without_the_model_input_loads_the_unet_and_the_dit_samples_through_ksampler(captured, comfy) -> None:
    """An API graph saved before the `model` input existed (no value for it) still runs, on the UNet."""
    assert demo_loader()["inputs"] == {}
    outputs = {}
    chosen_unet = {"class_type": "P2PDemoModelLoader", "inputs": {"model": "unet (SD-style)"}}
    for name, loader in {"old": demo_loader(), "unet": chosen_unet, "dit": demo_loader("dit")}.items():
        graph = text_to_image_graph(SOURCE, 1, FEW, batch=2)
        graph["model"] = loader
        comfy.run_graph(graph)
        outputs[name] = captured["out"]
    assert torch.equal(outputs["old"], outputs["unet"])
    dit = outputs["dit"]
    assert dit.shape == (2, 3, 32, 32) and torch.isfinite(dit).all()
    assert relative(dit, outputs["unet"]) > 0.1 and relative(dit[0], dit[1]) > 0.01


def test_word_swap_on_the_dit_demo_changes_the_target_and_keeps_the_source(captured, comfy) -> None:
    """The swap in every joint block (the benchmark's DiT settings; the demo DiT has 3, `coarse` is the first).
    Measured against the target prompt's own sample from the same noise, so that it holds however well the
    weights are trained: the edit moves the target away from it and keeps the source's layout better than it
    (the objects' footprint, as the detector reads it: a colour swap's pixels differ from the source's
    wherever the object is, so a pixel distance would mostly measure the new colour)."""
    from benchmarks.quality import REPLACE, iou, p2p_graph

    seed = 1
    swap = [("AttentionReplace", REPLACE["dit"])]
    comfy.run_graph(p2p_graph(SOURCE, TARGET, seed, QUICK, swap, model="dit"))
    edited = captured["out"]
    plain = {}
    for prompt in (SOURCE, TARGET):
        comfy.run_graph(text_to_image_graph(prompt, seed, QUICK, model="dit"))
        plain[prompt] = captured["out"][0]
    apart = distance(plain[SOURCE], plain[TARGET])
    # The source row samples as it does alone up to float rounding (not bit for bit: the same holds against a
    # plain batch of the two prompts), which the sampler amplifies: far below what the edit moves the target.
    assert relative(edited[0], plain[SOURCE]) < 0.01 * relative(edited[1], plain[TARGET])
    # The edit acts: the target is not what its own prompt gives from the same noise ...
    assert distance(edited[1], plain[TARGET]) > 0.1 * apart
    # ... and keeps the source: its objects cover the source's more than the target prompt's own objects do.
    source = foreground(edited[0])
    assert iou(foreground(edited[1]), source) > iou(foreground(plain[TARGET]), source)
