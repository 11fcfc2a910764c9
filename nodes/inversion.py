"""DDIMInvert: a photo into noise and the way there (host/inversion.py does the work)."""

from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from ..host.inversion import invert_latent
from .types import CATEGORY, P2PInversion, names_errors


class DDIMInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DDIMInvert",
            display_name="P2P DDIM Invert",
            category=CATEGORY,
            description=(
                "Inverts a VAE-encoded photo into the noise that the euler/ddim sampler turns back into it "
                "(DDIM inversion), and records the way there, so that P2P edits of a real photo keep it. SD1.x, "
                "SD2.x, SDXL, and the joint-attention models (Flux, SD3, Qwen-Image, Z-Image, Chroma; rectified "
                "flow: the same Euler inversion in sigma space)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The plain model, the one you connect to the P2P edit nodes."),
                io.Conditioning.Input(
                    "positive",
                    tooltip=(
                        "A description of the photo. PromptPair's CONDITIONING works: its first row, the "
                        "source prompt, is used."
                    ),
                ),
                io.Latent.Input("latent", tooltip="The photo, VAE-encoded (VAEEncode)."),
                io.Int.Input(
                    "steps",
                    default=50,
                    min=1,
                    max=10000,
                    tooltip="Steps of the schedule to invert along: give the sampler the same steps and scheduler.",
                ),
                io.Combo.Input(
                    "scheduler",
                    options=comfy.samplers.SCHEDULER_NAMES,
                    default="normal",
                    tooltip="The sampler's scheduler ('ddim_uniform' is the paper's DDIM schedule).",
                ),
                io.Float.Input(
                    "cfg",
                    default=1.0,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                    round=0.01,
                    optional=True,
                    tooltip=(
                        "Guidance while inverting. 1 is plain DDIM inversion; the pinned source branch "
                        "reconstructs the photo at any value. Other values need a negative conditioning. Flux dev "
                        "(guidance-distilled): keep 1 and set its guidance with FluxGuidance on the positive."
                    ),
                ),
                io.Conditioning.Input("negative", optional=True, tooltip="Only needed when cfg is not 1."),
            ],
            outputs=[
                io.Latent.Output(
                    tooltip=(
                        "The inverted noise: sample it with KSamplerAdvanced (add_noise 'disable') or "
                        "SamplerCustomAdvanced (DisableNoise), with the same steps and scheduler. On the "
                        "joint-attention models (Flux, SD3, Qwen-Image, Z-Image, Chroma: rectified flow) the sampler "
                        "starts from it only through an edit node's inversion input "
                        "(ComfyUI's samplers start a flow model at (1 - sigma) x latent = 0 without noise)."
                    ),
                ),
                P2PInversion.Output(
                    "inversion",
                    display_name="inversion",
                    tooltip="The inversion's states: connect to an edit node's inversion input.",
                ),
            ],
        )

    @names_errors
    @classmethod
    def execute(cls, model, positive, latent, steps, scheduler, cfg=1.0, negative=None) -> io.NodeOutput:
        noise, trajectory = invert_latent(model, positive, latent["samples"], steps, scheduler, cfg, negative)
        return io.NodeOutput({"samples": noise}, trajectory)
