"""LocalBlend: keep the source outside the edited words' region, or a mask of the user's own (host/recording.py
does the work)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..host.inversion import pin_source
from ..host.recording import local_blend
from ..p2p_core.blending import OWN_MASK_MODES
from ..p2p_core.tokens import PromptSet
from .inputs import ResolutionChoice, inversion_input, resolution_factor, resolution_input
from .types import CATEGORY, P2PPrompts, names_errors


class LocalBlend(ResolutionChoice, io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LocalBlend",
            display_name="P2P Local Blend",
            category=CATEGORY,
            description=(
                "Keeps everything outside the edited words identical to the source: a mask from the cross-attention "
                "maps of the chosen words (source and target united) blends each target toward the source while "
                "sampling, and the final target equals the source exactly outside the final mask. Chains before "
                "or after Attention Replace / Refine / Reweight. On the joint-attention models (Flux, SD3, "
                "Qwen-Image, Z-Image, Chroma) the maps are the image->text part of the joint attention."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model, plain or patched by a P2P edit node; it is cloned."),
                P2PPrompts.Input("prompts", tooltip="From PromptPair: the same prompts as the edit."),
                io.String.Input(
                    "source_words",
                    default="bicycle",
                    tooltip="Words of the source prompt whose region may change, comma separated ('cat, red hat').",
                ),
                io.String.Input(
                    "target_words",
                    default="car",
                    tooltip="Words of the target prompt(s) whose region may change, comma separated.",
                ),
                io.Float.Input(
                    "threshold",
                    default=0.3,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip=(
                        "A position belongs to the mask where a word's map exceeds this fraction of its maximum. "
                        "Lower grows the edited region; higher keeps more of the source (paper: 0.3)."
                    ),
                ),
                io.Float.Input(
                    "blend_start",
                    default=0.2,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    optional=True,
                    tooltip=(
                        "Fraction of the steps after which the blend acts (the early maps are noise; paper: 0.2). "
                        "The final image is always blended with the final mask."
                    ),
                ),
                resolution_input(),
                inversion_input(),
                io.Mask.Input(
                    "mask",
                    optional=True,
                    tooltip=(
                        "A mask of your own (the mask editor of Load Image, or any mask node), at any size: one "
                        "mask, or one per target. White may change; outside it each target stays the source "
                        "exactly. mask_mode says how it meets the words' mask."
                    ),
                ),
                io.Combo.Input(
                    "mask_mode",
                    options=list(OWN_MASK_MODES),
                    default=OWN_MASK_MODES[0],
                    optional=True,
                    tooltip=(
                        "With a mask connected: 'replace' uses it instead of the words' mask (the words are "
                        "then ignored), 'union' lets both regions change, 'intersect' only where both agree."
                    ),
                ),
            ],
            outputs=[
                io.Model.Output(tooltip="The patched model: connect it to a sampler with PromptPair's conditioning.")
            ],
        )

    @names_errors
    @classmethod
    def execute(
        cls,
        model,
        prompts: PromptSet,
        source_words: str,
        target_words: str,
        threshold: float,
        blend_start: float = 0.2,
        resolution: str | None = None,
        inversion=None,
        mask: torch.Tensor | None = None,
        mask_mode: str = OWN_MASK_MODES[0],
    ) -> io.NodeOutput:
        factor = resolution_factor(resolution)
        patched, _ = local_blend(
            model, prompts, source_words, target_words, threshold, blend_start, factor, mask, mask_mode
        )
        return io.NodeOutput(pin_source(patched, inversion))
