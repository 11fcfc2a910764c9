"""Graphs on the pack's built-in demo models, shared by the quality benchmark and the demo-model tests, and the
real-image edit graph (inversion + edit) on any checkpoint, shared by the quality and PIE-Bench benchmarks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Sampling:
    """Sampler settings of every graph: by default Prompt-to-Prompt's own (50 DDIM steps, guidance 7.5; on
    this eps model ComfyUI's euler is the DDIM update)."""

    steps: int = 50
    cfg: float = 7.5
    sampler: str = "euler"
    scheduler: str = "simple"


DEMO_MODELS = {"unet": "unet (SD-style)", "dit": "dit (SD3-style)"}
"""P2PDemoModelLoader's `model` choice for each demo architecture (`demo.model.ARCHITECTURES`)."""


def demo_loader(model: str = "unet") -> dict:
    """The loader node of demo model `model` ("unet" or "dit"). The UNet's has no `model` input, as in the API
    graphs saved before the input existed (they must keep loading the UNet)."""
    if model not in DEMO_MODELS:
        raise ValueError(f"model: {model!r} is not one of {', '.join(DEMO_MODELS)}")
    return {"class_type": "P2PDemoModelLoader", "inputs": {} if model == "unet" else {"model": DEMO_MODELS[model]}}


def text_to_image_graph(prompt: str, seed: int, s: Sampling, batch: int = 1, model: str = "unet") -> dict:
    """Demo loader (of `model`, see `demo_loader`) -> CLIPTextEncode (prompt, empty negative) -> KSampler ->
    capture `out`."""
    return {
        "model": demo_loader(model),
        "positive": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": prompt}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": ""}},
        "latent": {"class_type": "P2PDemoEmptyLatent", "inputs": {"width": 32, "height": 32, "batch_size": batch}},
        "sample": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["model", 0],
                "positive": ["positive", 0],
                "negative": ["negative", 0],
                "latent_image": ["latent", 0],
                "seed": seed,
                "steps": s.steps,
                "cfg": s.cfg,
                "sampler_name": s.sampler,
                "scheduler": s.scheduler,
                "denoise": 1.0,
            },
        },
        "capture": {"class_type": "P2PTestCaptureLatent", "inputs": {"samples": ["sample", 0], "name": "out"}},
    }


DEMO_LOADER = demo_loader()
"""The built-in demo UNet's loader node; a checkpoint's is CheckpointLoaderSimple (the same three outputs)."""

REAL_IMAGE_METHODS = ("p2p", "pinned", "naive")
"""How `real_image_edit_graph` edits an inverted photo: the P2P chain sampled from the inverted noise (`p2p`),
the same with the source branch pinned to the inversion (`pinned`), or the target prompt alone from the inverted
noise (`naive`, the baseline)."""


def real_image_edit_graph(loader: dict, image_name: str, source: str, target: str, s: Sampling, method: str,
                          chain: list[tuple[str, dict]]) -> dict:
    """loader -> LoadImage -> VAEEncode -> DDIMInvert (source prompt, cfg 1) -> the edit -> KSamplerAdvanced
    without added noise (node `sample`, DDIMInvert's steps and scheduler); the caller adds the output nodes.

    `loader` has MODEL, CLIP, VAE as outputs 0, 1, 2 (P2PDemoModelLoader, CheckpointLoaderSimple). `chain`: the
    P2P nodes (class, inputs) chained onto the model, each given PromptPair's prompts, and DDIMInvert's inversion
    when `method` is `pinned`; `naive` ignores it and samples CLIPTextEncode(target). The sample's batch is
    [source, target] for the P2P methods, [target] for `naive`.
    """
    if method not in REAL_IMAGE_METHODS:
        raise ValueError(f"method: {method!r} is not one of {', '.join(REAL_IMAGE_METHODS)}")
    graph = {
        "model": loader,
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": ""}},
        "image": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "encode": {"class_type": "VAEEncode", "inputs": {"pixels": ["image", 0], "vae": ["model", 2]}},
        "pair": {"class_type": "PromptPair", "inputs": {"clip": ["model", 1], "source": source, "target": target}},
    }
    graph["invert"] = {"class_type": "DDIMInvert", "inputs": {
        "model": ["model", 0], "positive": ["pair", 0], "latent": ["encode", 0], "steps": s.steps,
        "scheduler": s.scheduler}}
    model, positive = ["model", 0], ["pair", 0]
    if method == "naive":
        graph["target"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": target}}
        positive = ["target", 0]
    else:
        pin = {"inversion": ["invert", 1]} if method == "pinned" else {}
        for i, (class_type, inputs) in enumerate(chain):
            graph[f"edit{i}"] = {"class_type": class_type,
                                 "inputs": {"model": model, "prompts": ["pair", 1], **inputs, **pin}}
            model = [f"edit{i}", 0]
    graph["sample"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "model": model, "add_noise": "disable", "noise_seed": 0, "steps": s.steps, "cfg": s.cfg,
        "sampler_name": s.sampler, "scheduler": s.scheduler, "positive": positive,
        "negative": ["negative", 0], "latent_image": ["invert", 0], "start_at_step": 0, "end_at_step": 10000,
        "return_with_leftover_noise": "disable"}}
    return graph
