"""Quality of the demo model and of Prompt-to-Prompt on it, measured by a scene detector.

    .venv/bin/python benchmarks/quality.py                    # everything, 100 seeds per row
    .venv/bin/python benchmarks/quality.py --part model --seeds 100

Every image comes from a real in-process ComfyUI running API-format graphs: the pack's
P2PDemoModelLoader and P2PDemoEmptyLatent, the stock CLIPTextEncode and KSampler, and the pack's
P2P nodes. Images are read from the sampled latents (pixel space: image = (latent + 1) / 2) and
scored by `demo.detect` (colour, shape, texture, background, object masks).

1. The model: prompts drawn by `demo.scenes`, one seed each; the fraction of prompted objects drawn
   with the prompted colour, shape and texture, of images with every object right, and of named
   backgrounds right.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import comfy_harness  # noqa: E402
from demo.detect import detect, match  # noqa: E402
from demo.scenes import sample_scenes  # noqa: E402


@dataclass
class Sampling:
    """Sampler settings of every graph."""

    steps: int = 20
    cfg: float = 5.0
    sampler: str = "euler"
    scheduler: str = "simple"


def text_to_image_graph(prompt: str, seed: int, s: Sampling, batch: int = 1) -> dict:
    """Demo loader -> CLIPTextEncode (prompt, empty negative) -> KSampler -> capture `out`."""
    return {
        "model": {"class_type": "P2PDemoModelLoader", "inputs": {}},
        "positive": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": prompt}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": ""}},
        "latent": {"class_type": "P2PDemoEmptyLatent", "inputs": {"width": 32, "height": 32, "batch_size": batch}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": ["model", 0], "positive": ["positive", 0], "negative": ["negative", 0],
            "latent_image": ["latent", 0], "seed": seed, "steps": s.steps, "cfg": s.cfg,
            "sampler_name": s.sampler, "scheduler": s.scheduler, "denoise": 1.0}},
        "capture": {"class_type": "P2PTestCaptureLatent", "inputs": {"samples": ["sample", 0], "name": "out"}},
    }


def run_images(graph: dict) -> torch.Tensor:
    """Run a graph and return its captured latent as images `[B, 3, H, W]` in [0, 1]."""
    captured = comfy_harness.captured_latents()
    captured.clear()
    comfy_harness.run_graph(graph)
    return ((captured["out"].float() + 1.0) / 2.0).clamp(0, 1)


def model_accuracy(seeds: int, s: Sampling, seed: int = 0) -> dict[str, float]:
    """Generate one image per prompt for `seeds` random prompts; mean detector scores (see `match`)."""
    gen = torch.Generator().manual_seed(seed)
    scenes = sample_scenes(seeds, gen).scenes
    scores = []
    for i, scene in enumerate(scenes):
        image = run_images(text_to_image_graph(scene.caption(), i, s))[0]
        scores.append(match(scene, detect(image)))
    return {k: float(np.nanmean([r[k] for r in scores])) for k in scores[0]}


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["model", "all"], default="all")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=5.0)
    opts = parser.parse_args()
    s = Sampling(steps=opts.steps, cfg=opts.cfg)
    comfy_harness.boot()
    acc = model_accuracy(opts.seeds, s)
    print(f"## The demo model ({opts.seeds} prompts, {s.sampler}/{s.scheduler}, {s.steps} steps, cfg {s.cfg})\n")
    names = {"colour": "colour", "shape": "shape", "texture": "texture", "colour_shape": "colour + shape",
             "all": "every object right", "background": "background"}
    print(table(["prompted attribute present", "fraction"], [[names[k], f"{v:.1%}"] for k, v in acc.items()]))


if __name__ == "__main__":
    main()
