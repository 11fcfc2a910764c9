"""The real-shape checkpoints load through the stock CheckpointLoaderSimple (the Flux.1 diffusion model through the
stock UNETLoader), are recognised as the family they were built as, and sample with the stock KSampler and decode
with the stock VAEDecode.

All are marked slow (real shapes: 10 s to 2 min each on 2 CPU cores, plus writing the file the first time on a
machine); CI runs them."""

from __future__ import annotations

import pytest
import torch

from devtools import harness
from devtools.checkpoints import checkpoint


def stock_graph(ckpt_name: str, size: int = 64, steps: int = 2, latent: str = "EmptyLatentImage") -> dict:
    """Stock txt2img: loader -> two CLIPTextEncode -> KSampler -> VAEDecode -> PreviewImage; `latent` the empty
    latent node (EmptySD3LatentImage: 16 channels, as SD3 and Flux workflows have)."""
    return {
        "load": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "positive": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["load", 1], "text": "a red cat on a bicycle"}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["load", 1], "text": ""}},
        "latent": {"class_type": latent, "inputs": {"width": size, "height": size, "batch_size": 1}},
        "sample": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["load", 0],
                "positive": ["positive", 0],
                "negative": ["negative", 0],
                "latent_image": ["latent", 0],
                "seed": 1,
                "steps": steps,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "capture": {"class_type": "P2PTestCaptureLatent", "inputs": {"samples": ["sample", 0], "name": "out"}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["load", 2]}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }


def flux_graph(unet_name: str) -> dict:
    """Stock Flux.1 dev txt2img: Load Diffusion Model, the text through FluxGuidance (3.5), cfg 1; the text
    encoders and VAE the fixture's (harness.flux_text_encoders: no stock-loadable T5 of a few layers exists)."""
    graph = stock_graph(unet_name, latent="EmptySD3LatentImage")
    graph["load"] = {"class_type": "UNETLoader", "inputs": {"unet_name": unet_name, "weight_dtype": "default"}}
    graph["text"] = {"class_type": "P2PTestFluxTextEncoders", "inputs": {"seed": 0}}
    for name in ("positive", "negative"):
        graph[name]["inputs"]["clip"] = ["text", 0]
    graph["guidance"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": ["positive", 0], "guidance": 3.5}}
    graph["sample"]["inputs"].update({"positive": ["guidance", 0], "cfg": 1.0})
    graph["decode"]["inputs"]["vae"] = ["text", 1]
    return graph


@pytest.fixture
def detected(comfy, monkeypatch):
    """What the stock loaders built from each file they loaded (CheckpointLoaderSimple's and UNETLoader's functions):
    (config class, model type, diffusion model dtype).

    Records names only, so that the model is freed when the graph is done."""
    import comfy.sd

    seen: list[tuple[str, str, torch.dtype]] = []

    def spying(load, patcher_of):
        def spy(*args, **kwargs):
            out = load(*args, **kwargs)
            model = patcher_of(out).model
            seen.append((type(model.model_config).__name__, model.model_type.name, model.get_dtype()))
            return out

        return spy

    monkeypatch.setattr(
        comfy.sd, "load_checkpoint_guess_config", spying(comfy.sd.load_checkpoint_guess_config, lambda out: out[0])
    )
    monkeypatch.setattr(comfy.sd, "load_diffusion_model", spying(comfy.sd.load_diffusion_model, lambda out: out))
    yield seen
    harness.free_models()


def check_family(comfy, detected, captured, family: str, config: str, model_type: str, graph: dict | None = None):
    outputs = comfy.run_graph(graph or stock_graph(checkpoint(family)))
    assert detected == [(config, model_type, torch.float32)]
    latent = captured["out"]
    assert latent.shape == (1, 16 if graph else 4, 8, 8)
    assert torch.isfinite(latent).all() and latent.std() > 0
    (image,) = outputs["preview"]["images"]
    assert image["filename"].endswith(".png")


@pytest.mark.slow
def test_sd15(comfy, detected, captured):
    check_family(comfy, detected, captured, "sd15", "SD15", "EPS")


@pytest.mark.slow
def test_sd2_v_prediction(comfy, detected, captured):
    check_family(comfy, detected, captured, "sd2_v", "SD20", "V_PREDICTION")


@pytest.mark.slow
def test_sdxl(comfy, detected, captured):
    check_family(comfy, detected, captured, "sdxl", "SDXL", "EPS")


@pytest.mark.slow
def test_sd3_medium(comfy, detected, captured):
    """SD3 medium's 2B MMDiT with CLIP-L and CLIP-G inside (no T5), as `sd3_medium_incl_clips` is."""
    graph = stock_graph(checkpoint("sd3_medium"), latent="EmptySD3LatentImage")
    check_family(comfy, detected, captured, "sd3_medium", "SD3", "FLOW", graph)


@pytest.mark.slow
def test_flux_at_its_real_widths(comfy, detected, captured):
    check_family(comfy, detected, captured, "flux_widths", "Flux", "FLUX", flux_graph(checkpoint("flux_widths")))
