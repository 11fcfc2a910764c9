"""AttentionMapRecorder and AttentionMaskExtract: the maps of chosen words while sampling, as masks and
heat maps (host/recording.py and host/masks.py do the work)."""

from __future__ import annotations

import dataclasses

import torch
from comfy_api.latest import io, ui

from ..host.masks import extract_masks
from ..host.recording import attach_recorder
from ..p2p_core.maps import MapRecorder
from ..p2p_core.tokens import PromptSet
from .inputs import ResolutionChoice, resolution_factor, resolution_input
from .types import CATEGORY, P2PPrompts, names_errors


class AttentionMapRecorder(ResolutionChoice, io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AttentionMapRecorder",
            display_name="P2P Attention Map Recorder",
            category=CATEGORY,
            description=(
                "Records where every word of the prompts lands while the model samples, for Attention Mask "
                "Extract: the cross-attention maps of one resolution, averaged; on the joint-attention models (Flux, "
                "SD3, Qwen-Image, Z-Image, Chroma), the image->text part of the joint attention. Works on a plain "
                "model too (no edit). Not needed after Local Blend, which records the same maps."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model, plain or patched by P2P nodes; it is cloned."),
                P2PPrompts.Input("prompts", tooltip="From PromptPair: the prompts the sampler gets."),
                resolution_input(),
            ],
            outputs=[
                io.Model.Output(
                    tooltip="Sample with this model, then connect it and its samples to Attention Mask Extract."
                )
            ],
        )

    @names_errors
    @classmethod
    def execute(cls, model, prompts: PromptSet, resolution: str | None = None) -> io.NodeOutput:
        factor = resolution_factor(resolution)
        return io.NodeOutput(attach_recorder(model, prompts, MapRecorder(prompts, factor)))


class AttentionMaskExtract(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AttentionMaskExtract",
            display_name="P2P Attention Mask Extract",
            category=CATEGORY,
            description=(
                "Masks and heat maps of chosen words from the cross-attention maps recorded while the samples were "
                "sampled (paper figure 4): one mask per image, for compositing or inpainting, and one labelled "
                "heat-map panel per word."
            ),
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip="The model that sampled the samples: the output of Attention Map Recorder or Local Blend.",
                ),
                io.Latent.Input("samples", tooltip="The sampler's output, unchanged."),
                P2PPrompts.Input("prompts", tooltip="From PromptPair: the prompts the samples were sampled with."),
                io.String.Input(
                    "words",
                    default="cat",
                    tooltip=(
                        "Words of the source or of a target, comma separated; each row's mask unites those in its "
                        "prompt."
                    ),
                ),
                io.Float.Input(
                    "threshold",
                    default=0.3,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="The mask holds the positions where a word's map exceeds this fraction of its maximum.",
                ),
                io.Int.Input(
                    "upscale",
                    default=8,
                    min=1,
                    max=64,
                    optional=True,
                    tooltip=(
                        "Image pixels per latent pixel: 8 for the VAEs of SD1.x, SD2.x, SDXL and the joint-attention "
                        "models (Flux.1, SD3, Qwen-Image, Z-Image, Chroma)."
                    ),
                ),
                io.Image.Input(
                    "images", optional=True, tooltip="The decoded samples, to draw the heat maps over (optional)."
                ),
            ],
            outputs=[
                io.Mask.Output(
                    "mask",
                    display_name="mask",
                    tooltip="One mask per image (source, then targets), at the image's size.",
                ),
                io.Image.Output(
                    "heatmaps", display_name="heatmaps", tooltip="Per image, one heat-map panel per word, labelled."
                ),
            ],
        )

    @names_errors
    @classmethod
    def execute(
        cls,
        model,
        samples: dict,
        prompts: PromptSet,
        words: str,
        threshold: float,
        upscale: int = 8,
        images: torch.Tensor | None = None,
    ) -> io.NodeOutput:
        masks, strips, coverage = extract_masks(model, samples["samples"], prompts, words, threshold, upscale, images)
        text = "\n".join(row.text(prompt.text) for row, prompt in zip(coverage, prompts.all, strict=True))
        report = [dataclasses.asdict(row) for row in coverage]
        return io.NodeOutput(masks, strips, ui={**ui.PreviewText(text).as_dict(), "p2p_masks": report})
