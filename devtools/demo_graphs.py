"""Graphs on the pack's built-in demo model, shared by the quality benchmark and the demo-model tests."""

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


def text_to_image_graph(prompt: str, seed: int, s: Sampling, batch: int = 1) -> dict:
    """Demo loader -> CLIPTextEncode (prompt, empty negative) -> KSampler -> capture `out`."""
    return {
        "model": {"class_type": "P2PDemoModelLoader", "inputs": {}},
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
