"""The built-in demo models: a loader that builds MODEL, CLIP and VAE from the UNet's `demo/p2p_demo.safetensors`
or the DiT's `demo/p2p_demo_dit.safetensors`, and an empty latent of their (shared) pixel-space shape."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import comfy.model_management
import torch
from comfy_api.latest import io

from ..demo.loader import load_demo
from ..demo.model import ARCHITECTURES
from .types import CATEGORY

DEMO = Path(__file__).resolve().parent.parent / "demo"
MODELS = {"unet (SD-style)": "unet", "dit (SD3-style)": "dit"}
"""The `model` choices of P2PDemoModelLoader: the demo architecture (`demo.model.ARCHITECTURES`) of each."""
DEFAULT_MODEL = "unet (SD-style)"
"""The UNet: also what a workflow saved before the `model` input existed (no value for it) loads."""


@cache
def _load(architecture: str) -> tuple:
    """Load demo model `architecture` ("unet", "dit") once per process: the objects are cloned by every node
    that patches them."""
    path = DEMO / ARCHITECTURES[architecture].checkpoint
    if not path.is_file():
        raise FileNotFoundError(
            f"P2PDemoModelLoader: {path} is missing (retrain it: python -m demo.train --model {architecture})"
        )
    return load_demo(path)


class P2PDemoModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PDemoModelLoader",
            display_name="P2P Demo Model Loader",
            category=CATEGORY,
            description=(
                "Loads one of the pack's small built-in text-to-image models (32x32 pixels, trained on procedural "
                "scenes such as 'a striped red circle next to a blue square on a yellow background'), so "
                "Prompt-to-Prompt can be tried on a CPU in seconds: an SD-style UNet or an SD3-style diffusion "
                "transformer. Use it with P2P Demo Empty Latent, the stock KSampler (cfg about 5, 20 steps, "
                "euler, simple) and the stock VAE Decode."
            ),
            inputs=[
                io.Combo.Input(
                    "model",
                    options=list(MODELS),
                    default=DEFAULT_MODEL,
                    optional=True,
                    tooltip=(
                        "Which demo model: the UNet (ComfyUI's SD-style UNet, cross-attention) or the DiT "
                        "(ComfyUI's SD3 MMDiT, joint attention over text and image tokens, as the joint-attention "
                        "models Flux, SD3, Qwen-Image, Z-Image and Chroma work). Same scenes, prompts and latents."
                    ),
                ),
            ],
            outputs=[
                io.Model.Output(
                    tooltip=(
                        "The demo diffusion model (ComfyUI's own SD-style UNet or SD3-style MMDiT, rectified flow "
                        "on pixels)."
                    ),
                ),
                io.Clip.Output(tooltip="The model's own text encoder (a small CLIP on the real CLIP tokenizer)."),
                io.Vae.Output(tooltip="ComfyUI's pixel-space VAE: latents are the RGB pixels in [-1, 1]."),
            ],
        )

    @classmethod
    def execute(cls, model: str = DEFAULT_MODEL) -> io.NodeOutput:
        if model not in MODELS:
            raise ValueError(f"P2PDemoModelLoader: model {model!r} is not one of {list(MODELS)}")
        diffusion, clip, vae, _ = _load(MODELS[model])
        return io.NodeOutput(diffusion, clip, vae)


class P2PDemoEmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PDemoEmptyLatent",
            display_name="P2P Demo Empty Latent",
            category=CATEGORY,
            description="An empty latent for the demo models: 3 channels at full resolution (pixel space).",
            inputs=[
                io.Int.Input("width", default=32, min=16, max=512, step=8,
                             tooltip="Image width in pixels; the model was trained at 32."),
                io.Int.Input("height", default=32, min=16, max=512, step=8,
                             tooltip="Image height in pixels; the model was trained at 32."),
                io.Int.Input("batch_size", default=1, min=1, max=4096, tooltip="Images in the batch."),
            ],
            outputs=[io.Latent.Output(tooltip="Zeros of shape [batch, 3, height, width].")],
        )

    @classmethod
    def execute(cls, width: int, height: int, batch_size: int = 1) -> io.NodeOutput:
        device = comfy.model_management.intermediate_device()
        return io.NodeOutput({"samples": torch.zeros(batch_size, 3, height, width, device=device)})


NODES = [P2PDemoModelLoader, P2PDemoEmptyLatent]
