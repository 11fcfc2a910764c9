"""The real-shape checkpoints load through the stock CheckpointLoaderSimple, are recognised as the
family they were built as, and sample with the stock KSampler and decode with the stock VAEDecode.

All are marked slow (real shapes: 10 s to 2 min each on 2 CPU cores, plus writing the checkpoint the
first time on a machine); CI runs them."""

from __future__ import annotations

import pytest
import torch

from devtools import harness
from devtools.checkpoints import checkpoint


def stock_graph(ckpt_name: str, size: int = 64, steps: int = 2) -> dict:
    """Stock txt2img: loader -> two CLIPTextEncode -> KSampler -> VAEDecode -> PreviewImage."""
    return {
        "load": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "positive": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["load", 1], "text": "a red cat on a bicycle"}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["load", 1], "text": ""}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
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


@pytest.fixture
def detected(comfy, monkeypatch):
    """What the stock loader built from each checkpoint it loaded: (config class, model type, UNet dtype).

    Records names only, so that the model is freed when the graph is done."""
    import comfy.sd

    seen: list[tuple[str, str, torch.dtype]] = []
    load = comfy.sd.load_checkpoint_guess_config

    def spy(*args, **kwargs):
        out = load(*args, **kwargs)
        model = out[0].model
        seen.append((type(model.model_config).__name__, model.model_type.name, model.get_dtype()))
        return out

    monkeypatch.setattr(comfy.sd, "load_checkpoint_guess_config", spy)
    yield seen
    harness.free_models()


def check_family(comfy, detected, captured, family: str, config: str, model_type: str) -> None:
    outputs = comfy.run_graph(stock_graph(checkpoint(family)))
    assert detected == [(config, model_type, torch.float32)]
    latent = captured["out"]
    assert latent.shape == (1, 4, 8, 8)
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
