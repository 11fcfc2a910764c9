"""PromptPair: encode a source prompt and its targets as one batch."""

from __future__ import annotations

from comfy_api.latest import io

from ..host.errors import UserError
from ..host.prompts import encode_prompts, split_targets
from .types import CATEGORY, P2PPrompts, names_errors


class PromptPair(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PromptPair",
            display_name="P2P Prompt Pair",
            category=CATEGORY,
            description=(
                "Encodes the source prompt and one or more target prompts as one batch (row 0 source, then "
                "the targets), to be sampled together from the same noise by a model patched by a P2P node."
            ),
            inputs=[
                io.Clip.Input("clip", tooltip="The text encoder of the checkpoint you sample with."),
                io.String.Input(
                    "source",
                    multiline=True,
                    default="a cat riding a bicycle",
                    tooltip="The prompt of the image you start from (or the prompt you inverted a photo with).",
                ),
                io.String.Input(
                    "target",
                    multiline=True,
                    default="a cat riding a car",
                    tooltip=(
                        "The edited prompt. Several lines give several targets, each an extra image in the "
                        "batch (a fader sweep repeats the same target on several lines). Prompt weights "
                        "like (red:1.2), embeddings and prompts over 77 tokens work."
                    ),
                ),
            ],
            outputs=[
                io.Conditioning.Output(tooltip="One row per prompt: connect to the sampler's positive input."),
                P2PPrompts.Output(
                    "prompts", display_name="prompts", tooltip="The prompts as tokenized, for the P2P edit nodes."
                ),
            ],
        )

    @names_errors
    @classmethod
    def execute(cls, clip, source: str, target: str) -> io.NodeOutput:
        targets = split_targets(target)
        if not source.strip():
            raise UserError("the source prompt is empty")
        if not targets:
            raise UserError("the target prompt is empty (write one target per line)")
        conditioning, prompts = encode_prompts(clip, source, targets)
        return io.NodeOutput(conditioning, prompts)
